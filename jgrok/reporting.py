"""What a sweep reports while it trains: an early time estimate, a progress bar (or plain
lines), live counts of fitted / generalized / diverged runs, and optional TensorBoard scalars.

:class:`Pacer` times training steps (pure bookkeeping, no output). `sweep.run_to_step` compiles
the training loop ahead of time (`Pacer.compiled`), then asks the pacer how many steps the next
*piece* of training should be: 1, 2, 4, ... timed steps until ``probe_s`` seconds of training
have been timed (without an ahead-of-time compile, the first piece is one untimed step), then
pieces of about ``piece_s`` seconds. The estimate therefore comes from timed training steps of
the real grid, never from the wall time between evaluations (log-spaced schedules evaluate
densely at first). Pieces never change results, only when the host looks.

:class:`SweepProgress` prints the estimate once (``estimate: ... about h:mm:ss``, with a hint
when the projection is far beyond what the machine suits) and then shows the step, run-steps/s,
the ETA as h:mm:ss and the counts at the latest evaluation: runs fitted (train accuracy >=
``PhaseThresholds.fit_acc``), generalized (validation accuracy >= ``gen_acc``) and diverged. On
a terminal, or in a notebook (``tqdm.auto``), it is a redrawing tqdm bar; on any other stream
(a log file, a pipe) it writes plain lines every so often, without carriage returns or escape
codes. `jgrok.rundir.run_sweep` creates one by default, so every entry point that trains
through it shows the same thing.

TensorBoard and Weights & Biases scalars are metric writers (`jgrok.writers`).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from typing import Optional, TextIO

import numpy as np

from jgrok import writers
from jgrok.analysis.phases import PhaseThresholds
from jgrok.writers import TensorBoardCells  # noqa: F401 (a writer; its home is jgrok.writers)

#: projected times above this (seconds) on a CPU get a hint towards the CPU preset
CPU_LONG_S = 3 * 3600
CPU_HINT = ("python experiments/phase_diagram.py --preset=cpu_grok  "
            "(a phase diagram with a grokking band in about 18 min on 2 cores)")


def hms(seconds: float) -> str:
    """Seconds as h:mm:ss (hours unbounded: 386:03:04)."""
    if seconds is None or not math.isfinite(seconds):
        return "?:??:??"
    s = int(round(max(seconds, 0.0)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _days(seconds: float) -> str:
    return f" ({seconds / 86400:.1f} days)" if seconds >= 2 * 86400 else ""


@dataclasses.dataclass(frozen=True)
class ProgressOptions:
    """How `run_sweep` reports progress (pass ``progress=None`` to report nothing).

    stream: where bar and lines go (None: ``sys.stderr`` at the time of the sweep).
    bar: True a redrawing tqdm bar, False plain lines, None: a bar on a terminal or in a
        notebook, plain lines otherwise.
    probe_s: seconds of timed training before the estimate is printed.
    piece_s: longest stretch of training (seconds) between two looks of the host (progress
        updates; a SIGTERM/SIGINT stop is served at the next look).
    line_every_s: plain lines: at least this many seconds apart (and at most 10 min apart, about
        every 1% of the projected time in between).
    thresholds: what counts as fitted and generalized (``fit_acc``, ``gen_acc``).
    """

    stream: Optional[TextIO] = None
    bar: Optional[bool] = None
    probe_s: float = 2.0
    piece_s: float = 10.0
    line_every_s: float = 30.0
    thresholds: PhaseThresholds = PhaseThresholds()


class Pacer:
    """Piece sizes for `sweep.run_to_step` and the time the rest of a sweep will take.

    `total_steps`, `start_step`: the sweep's budget and where this process starts; `eval_steps`:
    the evaluation schedule (their time is added to the ETA once one has been timed without
    compiling); `defer_first_eval`: evaluate `start_step` after the first steps are timed (on a
    CPU one evaluation of a big grid takes minutes).
    """

    def __init__(self, total_steps: int, start_step: int, eval_steps, probe_s: float = 2.0,
                 piece_s: float = 10.0, defer_first_eval: bool = False):
        self.total, self.start = int(total_steps), int(start_step)
        self.eval_steps = tuple(int(s) for s in eval_steps)
        self.probe_s, self.piece_s = float(probe_s), float(piece_s)
        self.defer_first_eval = bool(defer_first_eval)
        self.step = self.start
        # compiling the training loop (ahead of time, or with an untimed first piece of 1 step)
        self.compile_s: Optional[float] = None
        self.timed_steps, self.timed_s = 0, 0.0
        self.eval_times: list[float] = []  # the first one includes compiling the evaluation
        self.evaluated_upto = -1
        self._next_probe = 1
        self.ready = False  # enough steps timed for an estimate

    def piece(self, step: int, n_left: int) -> int:
        if self.compile_s is None:
            return 1
        if not self.ready:
            return min(n_left, self._next_probe)
        return max(1, min(n_left, int(self.piece_s / max(self.step_s(), 1e-9))))

    def compiled(self, seconds: float) -> None:
        """The training loop was compiled ahead of the first piece (which is then timed)."""
        self.compile_s = float(seconds)

    def trained(self, n: int, seconds: float) -> None:
        self.step += int(n)
        if self.compile_s is None:
            self.compile_s = float(seconds)
        else:
            self.timed_steps += int(n)
            self.timed_s += float(seconds)
            self._next_probe *= 2
        left = self.total - self.start
        if not self.ready and self.timed_steps and (
                self.timed_s >= self.probe_s or self.timed_steps >= max(1, left // 20)):
            self.ready = True

    def evaluated(self, step: int, seconds: float) -> None:
        self.evaluated_upto = max(self.evaluated_upto, int(step))
        self.eval_times.append(float(seconds))

    def step_s(self) -> float:
        """Seconds per training step of the whole grid (timed steps only)."""
        return self.timed_s / self.timed_steps if self.timed_steps else float("nan")

    def eval_s(self) -> Optional[float]:
        """Seconds per evaluation: without the first (compiling) one when another was timed."""
        if len(self.eval_times) > 1:
            return float(np.mean(self.eval_times[1:]))
        return None

    def evals_left(self) -> int:
        return sum(1 for s in self.eval_steps if s > self.evaluated_upto)

    def training_left_s(self) -> float:
        return (self.total - self.step) * self.step_s()

    def eta_s(self) -> float:
        e = self.eval_s()
        return self.training_left_s() + (self.evals_left() * e if e is not None else 0.0)


class SweepProgress:
    """The progress display of one sweep (see the module docstring). Call `trained` after
    each piece of training, `evaluated` after each evaluation, `close` at the end."""

    def __init__(self, n_runs: int, total_steps: int, start_step: int, eval_steps,
                 platform: str = "cpu", options: ProgressOptions = ProgressOptions(),
                 defer_first_eval: bool = False):
        self.opt = options
        self.n_runs, self.total, self.start = int(n_runs), int(total_steps), int(start_step)
        self.platform = platform
        self.pacer = Pacer(total_steps, start_step, eval_steps, options.probe_s,
                           options.piece_s, defer_first_eval)
        self.stream = options.stream if options.stream is not None else sys.stderr
        self.counts: Optional[dict] = None  # fitted / generalized / diverged at the last eval
        self.counts_step: Optional[int] = None
        self.estimate_s: Optional[float] = None
        self._t0 = self._t_mark = time.perf_counter()
        self._last_line, self._last_key = self._t0, None
        self._closed = False
        self.bar = self._make_bar()
        timing = "; timing the first steps for an estimate" if self.start < self.total else ""
        self._say(f"progress: {self.n_runs} runs, steps {self.start} -> {self.total}"
                  f"{' (resumed)' if self.start else ''}{timing}")

    # -- the pacer protocol of `sweep.run_to_step` ----------------------------------------
    @property
    def defer_first_eval(self) -> bool:
        return self.pacer.defer_first_eval

    @property
    def ready(self) -> bool:
        return self.pacer.ready

    def piece(self, step: int, n_left: int) -> int:
        return self.pacer.piece(step, n_left)

    def compiled(self, seconds: float) -> None:
        self.pacer.compiled(seconds)
        self._t_mark = time.perf_counter()

    # -- display ---------------------------------------------------------------------------
    def _make_bar(self):
        from tqdm import std

        auto = None
        try:
            from tqdm.auto import tqdm as auto
        except ImportError:  # pragma: no cover - tqdm.auto is part of tqdm
            pass
        notebook = auto is not None and any(c.__module__ == "tqdm.notebook"
                                            for c in auto.__mro__)
        want = self.opt.bar
        if want is None:
            isatty = getattr(self.stream, "isatty", None)
            want = notebook or bool(isatty and isatty())
        if not want:
            return None
        cls = auto if notebook and self.opt.stream is None else std.tqdm
        return cls(total=self.total, initial=self.start, unit="step", file=self.stream,
                   dynamic_ncols=True, smoothing=0,
                   bar_format="{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} steps "
                              "[{elapsed}{postfix}]")

    def _say(self, line: str) -> None:
        if self.bar is not None:
            type(self.bar).write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def _status(self) -> str:
        p = self.pacer
        rate = self.n_runs / p.step_s() if p.timed_steps else float("nan")
        parts = [f"{rate:,.1f} run-steps/s" if math.isfinite(rate) else "timing",
                 f"ETA {hms(p.eta_s())}" if p.timed_steps else "ETA ?:??:??"]
        if self.counts is not None:
            c = self.counts
            parts.append(f"fitted {c['fitted']}/{self.n_runs} generalized "
                         f"{c['generalized']}/{self.n_runs} diverged "
                         f"{c['diverged']}/{self.n_runs}")
        return "  ".join(parts)

    def _line(self) -> str:
        step = self.pacer.step
        return (f"step {step:,}/{self.total:,} ({100 * step / max(self.total, 1):.1f}%)  "
                f"elapsed {hms(time.perf_counter() - self._t0)}  {self._status()}")

    def _update(self, force: bool = False) -> None:
        if self._closed:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(self._status(), refresh=False)
            self.bar.update(self.pacer.step - self.bar.n)  # redraws at most every 0.1 s
            if force:
                self.bar.refresh()
            return
        now = time.perf_counter()
        every = self.opt.line_every_s
        if self.estimate_s is not None:
            every = min(max(every, self.estimate_s / 100), max(every, 600.0))
        key = (self.pacer.step, self.counts_step)
        if (force and key != self._last_key) or now - self._last_line >= every:
            self._last_line, self._last_key = now, key
            self._say(self._line())

    # -- events ----------------------------------------------------------------------------
    def trained(self, n: int, seconds: float) -> None:
        was_ready = self.pacer.ready
        self.pacer.trained(n, seconds)
        self._t_mark = time.perf_counter()
        if self.pacer.ready and not was_ready:
            self._announce()
        self._update()

    def evaluated(self, step: int, metrics: Optional[dict], timed: bool = True) -> None:
        """`metrics` as from `sweep.evaluate` (train_acc, val_acc, diverged per run); `timed`:
        whether the time since the last piece of training was this evaluation's."""
        now = time.perf_counter()
        if timed:
            self.pacer.evaluated(step, now - self._t_mark)
        else:
            self.pacer.evaluated_upto = max(self.pacer.evaluated_upto, int(step))
        self._t_mark = now
        if metrics is not None:
            self.counts, self.counts_step = count_runs(metrics, self.opt.thresholds), int(step)
        self._update(force=self.counts_step == self.total)

    def _announce(self) -> None:
        p = self.pacer
        left = p.eta_s()
        self.estimate_s = time.perf_counter() - self._t0 + left
        e = p.eval_s()
        evals = (f" + {p.evals_left():,} evaluations of {e:.2g} s" if e is not None else
                 f"; the {p.evals_left():,} evaluations join the ETA once one is timed")
        steps = f"{p.timed_steps:,} step{'s' if p.timed_steps > 1 else ''}"
        self._say(f"estimate: {self.n_runs} runs x {self.total - p.step:,} steps to go at "
                  f"{self.n_runs / p.step_s():,.1f} run-steps/s (timed over {steps} after "
                  f"compiling in {p.compile_s:.1f} s){evals}: about {hms(left)}{_days(left)} "
                  f"to go (h:mm:ss)")
        if self.platform == "cpu" and left > CPU_LONG_S:
            self._say(f"that is far beyond what a CPU suits ({hms(CPU_LONG_S)} or more); "
                      f"stop it (Ctrl-C saves a checkpoint) and try {CPU_HINT}, or run this "
                      f"sweep on a GPU/TPU")

    def close(self) -> None:
        if self._closed:
            return
        self._update(force=True)
        self._closed = True
        if self.bar is not None:
            self.bar.close()


def count_runs(metrics: dict, thresholds: PhaseThresholds = PhaseThresholds()) -> dict:
    """Runs fitted (train_acc >= fit_acc), generalized (val_acc >= gen_acc) and diverged."""
    return dict(fitted=int(np.sum(np.asarray(metrics["train_acc"]) >= thresholds.fit_acc)),
                generalized=int(np.sum(np.asarray(metrics["val_acc"]) >= thresholds.gen_acc)),
                diverged=int(np.sum(np.asarray(metrics["diverged"]) != 0)))


def require_tensorboardx() -> None:
    """One `ConfigError` line when tensorboardX is missing (`jgrok.writers.require`)."""
    writers.require("tensorboardX")

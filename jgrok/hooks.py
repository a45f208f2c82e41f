"""Hooks around the training loop: what happens at each evaluation and between pieces.

`sweep.run_to_step` trains and evaluates; it knows nothing of tables, checkpoints or signals.
It calls, in list order, each hook's

    after_eval(step, state, metrics) -> None, or True to end the loop after this evaluation
    after_piece(step, state)         after each timed piece of training between evaluations

(both optional; `state` is a `sweep.LateState` for an evaluation the loop put off, see
`run_to_step`). `rundir.run_sweep` assembles the hooks of a sweep around one `Loop`, the state
they share (the rows of the metrics table, the step of the last checkpoint, a stop request), in
this order:

    MetricRows        the evaluation's rows of metrics.csv (with the sweep's constant columns)
    UserColumns       `on_eval`'s extra per-run columns, added to those rows
    Progress          the progress display (`jgrok.reporting.SweepProgress`)
    WriteMetrics      the metric writers (`jgrok.writers`: TensorBoard, Weights & Biases)
    StopWhenDecided   ends the sweep once every run is decided (`TrainConfig.stop_when_decided`)
    Checkpointer      the tables, then an Orbax checkpoint, at checkpoint steps and at the end
    StopOnSignal      after SIGTERM/SIGINT: a checkpoint at the step reached, then `Stopped`

To add a hook: a class with `after_eval` and/or `after_piece`, built in `rundir.run_sweep` with
what it needs (usually the `Loop`; what it opens, `run_sweep` closes when the sweep ends, also on
an error: see how it closes the writers and checkpoints), placed in the list where its order
matters: hooks that read the step's rows come after
`MetricRows`/`UserColumns`; one that ends the loop comes before `Checkpointer`, which saves when
`Loop.finish` is set. A hook that only sees the metrics table is a metric writer
(`jgrok.writers.MetricWriter`). Hooks change what is recorded, never the training: a step depends
only on the state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
from typing import Any, Callable, Optional

import numpy as np

from jgrok import sweep
from jgrok.analysis.phases import PhaseThresholds
from jgrok.errors import Stopped


@dataclasses.dataclass
class StopRequest:
    """A SIGTERM/SIGINT received while the sweep trains (`stop_on_signals`)."""

    signum: Optional[int] = None


@contextlib.contextmanager
def stop_on_signals(signals=(signal.SIGTERM, signal.SIGINT)):
    """While the sweep trains, SIGTERM and SIGINT only record a stop request; `StopOnSignal`
    saves a checkpoint at the next evaluation step (or piece) and raises `Stopped`. Outside the
    main thread (where Python cannot install handlers) nothing changes."""
    req = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield req
        return

    def handler(signum, frame):
        if req.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: leave now
        req.signum = signum

    old = {s: signal.signal(s, handler) for s in signals}
    try:
        yield req
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@dataclasses.dataclass
class Loop:
    """What the hooks of one sweep share.

    rows: the metrics table so far (restored rows first), one dict per run and evaluated step;
    new_rows: the rows of the latest evaluation (the same dicts, at the end of `rows`);
    step_rows: the per-step table of a `StepLogger` (steps.csv); last_saved: the step of the
    newest checkpoint; finish: set by a hook that ends the loop after this evaluation.
    """

    engine: Any
    schedule: tuple
    start: int
    rows: list
    stop: StopRequest = dataclasses.field(default_factory=StopRequest)
    prefix: dict = dataclasses.field(default_factory=dict)
    step_rows: list = dataclasses.field(default_factory=list)
    new_rows: list = dataclasses.field(default_factory=list)
    last_saved: int = 0
    finish: bool = False


def close_all(things) -> None:
    """Call each one's `close` (in order; each one even if an earlier one fails)."""
    errors = []
    for h in things:
        if h is not None:
            try:
                h.close()
            except Exception as e:  # noqa: BLE001 - the others still close
                errors.append(e)
    if errors:
        raise errors[0]


class MetricRows:
    """Adds each evaluation's rows (one per run, `sweep.metric_rows`) to `Loop.rows`."""

    def __init__(self, loop: Loop):
        self.loop = loop

    def after_eval(self, step, state, metrics):
        lp = self.loop
        lp.new_rows = sweep.metric_rows(lp.engine, step, metrics, extra_coords=lp.prefix)
        lp.rows.extend(lp.new_rows)


class UserColumns:
    """A user's measure: `on_eval(step, state, metrics)` returns None or extra per-run columns
    ({name: sequence of n_runs values}), added to the step's rows, so that they survive a resume
    like the metrics do."""

    def __init__(self, loop: Loop, on_eval: Callable):
        self.loop, self.on_eval = loop, on_eval

    def after_eval(self, step, state, metrics):
        extra = self.on_eval(step, state, metrics)
        for k, values in (extra or {}).items():
            for row, v in zip(self.loop.new_rows, values):
                row[k] = v.item() if hasattr(v, "item") else v  # plain values read back equal


class Progress:
    """The progress display (`jgrok.reporting.SweepProgress`), told of each evaluation; a
    resumed sweep starts from the counts of the restored step's rows."""

    def __init__(self, loop: Loop, reporter):
        self.reporter = reporter
        if loop.rows:
            at = max(r["step"] for r in loop.rows)
            reporter.evaluated(at, {k: [r[k] for r in loop.rows if r["step"] == at]
                                    for k in ("train_acc", "val_acc", "diverged")}, timed=False)

    def after_eval(self, step, state, metrics):
        self.reporter.evaluated(step, metrics)


class WriteMetrics:
    """Hands each evaluation's rows to the metric writers (`jgrok.writers`); their rows are
    exactly the rows of metrics.csv."""

    def __init__(self, loop: Loop, writers: list):
        self.loop, self.writers = loop, list(writers)
        for w in self.writers:
            w.begin(loop.rows)

    def after_eval(self, step, state, metrics):
        for w in self.writers:
            w.write(step, self.loop.new_rows)


class StopWhenDecided:
    """Ends the sweep once every run is decided: it has generalized (validation accuracy >=
    `thresholds.gen_acc`) at each of its last `k` evaluations, or it has diverged. A resumed
    sweep counts from the restored rows; `Loop.finish` is set at once if they decide it."""

    def __init__(self, loop: Loop, k: int, thresholds: PhaseThresholds = PhaseThresholds()):
        self.loop, self.k, self.gen_acc = loop, int(k), thresholds.gen_acc
        self.held = np.zeros(loop.engine.n_runs, int)  # evaluations in a row at gen_acc
        self.diverged = np.zeros(loop.engine.n_runs, bool)
        for step in sorted({r["step"] for r in loop.rows}):
            self._count([r for r in loop.rows if r["step"] == step])
        if loop.rows and self.decided():
            loop.finish = True

    def _count(self, rows):
        run = np.array([r["run"] for r in rows])
        ok = np.array([r["val_acc"] >= self.gen_acc for r in rows])
        self.held[run] = np.where(ok, self.held[run] + 1, 0)
        self.diverged[run] |= np.array([r["diverged"] != 0 for r in rows])

    def decided(self) -> bool:
        return bool(np.all(self.diverged | (self.held >= self.k)))

    def after_eval(self, step, state, metrics):
        self._count(self.loop.new_rows)
        # a put-off evaluation's state has moved on: the next evaluation decides
        if not sweep.is_late(state) and self.decided():
            self.loop.finish = True
            return True
        return None


class Checkpointer:
    """Writes the tables (`flush`, process 0 only), then an Orbax checkpoint, at every
    checkpoint step (`checkpoint_every` after the last one, and the last step), at a stop
    request and when a hook ends the loop; the table always holds every row up to the newest
    checkpoint."""

    def __init__(self, loop: Loop, ckpts, cfg, flush: Optional[Callable[[], None]]):
        self.loop, self.ckpts, self.cfg, self.flush = loop, ckpts, cfg, flush

    def due(self, step: int) -> bool:
        lp, train = self.loop, self.cfg.train
        return (step == train.steps or step - lp.last_saved >= train.checkpoint_every
                or lp.stop.signum is not None or lp.finish)

    def save(self, step: int, state) -> None:
        if self.flush is not None:
            self.flush()
        self.ckpts.save(step, state)
        self.loop.last_saved = step

    def after_eval(self, step, state, metrics):
        if step > self.loop.start and self.due(step):
            self.save(step, state)


class StopOnSignal:
    """After a SIGTERM/SIGINT (`stop_on_signals`): at an evaluation, once `Checkpointer` has
    saved it, raise `Stopped`; between two evaluations, save the state at the step reached (the
    table holds every evaluation before it, once the start step's rows are in) and raise."""

    def __init__(self, loop: Loop, checkpointer: Checkpointer):
        self.loop, self.checkpointer = loop, checkpointer

    def after_eval(self, step, state, metrics):
        signum = self.loop.stop.signum
        if signum is not None and not sweep.is_late(state):  # (a put-off evaluation's stop
            raise Stopped(signum, step)                        # is served by after_piece)

    def after_piece(self, step, state):
        lp = self.loop
        if lp.stop.signum is not None and lp.rows and step not in lp.schedule:
            self.checkpointer.save(step, state)
            raise Stopped(lp.stop.signum, step)


class StepLogger:
    """Advances with a per-step logger instead of `sweep.advance` (the slingshot study):
    `step_log(engine, state, n) -> (state after n steps, {name: array (n_runs, n)})`; its values
    go to `Loop.step_rows`, one row per run and step (written to steps.csv with metrics.csv)."""

    def __init__(self, loop: Loop, step_log: Callable):
        self.loop, self.step_log = loop, step_log

    def __call__(self, engine, state, n, from_step):
        state, values = self.step_log(engine, state, n)
        for i, g in enumerate(engine.grid):
            for t in range(n):
                self.loop.step_rows.append(
                    dict(run=i, **self.loop.prefix, **g, step=from_step + t,
                         **{k: float(v[i, t]) for k, v in values.items()}))
        return state

"""The progress reporter (jgrok.reporting): estimate, counts, plain lines off a terminal, resumed
progress, stops between evaluations, and the TensorBoard cell scalars."""

import io
import os
import re
import signal
import struct
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, dataset_for

from jgrok import checkpoint, reporting, rundir
from jgrok.analysis.phases import PhaseThresholds
from jgrok.config import ExperimentConfig, ModelConfig, SweepConfig, TaskConfig, TrainConfig
from jgrok.errors import ConfigError, Stopped

QUIET = dict(log=lambda m: None)
ESCAPES = re.compile(r"\r|\x1b")


class Killed(Exception):
    pass


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def plain(stream=None, **kw):
    return reporting.ProgressOptions(stream=stream if stream is not None else io.StringIO(), **kw)


def fitting_cfg():
    """8 MLP runs: 4 fit add mod 7 within 60 full-batch steps, 4 overflow (lr 1e30)."""
    return ExperimentConfig(
        task=TaskConfig(op="add", p=7), model=ModelConfig(kind="mlp", mlp_width=32),
        train=TrainConfig(steps=60, eval_every=20, batch_size="full"),
        sweep=SweepConfig(seeds=(0, 1), fractions=(0.4, 0.7), lrs=(3e-2, 1e30)))


def test_counts_match_the_final_metrics_and_plain_output_has_no_control_characters(tmp_path):
    cfg = fitting_cfg()
    out = io.StringIO()
    df = rundir.run_sweep(cfg, dataset_for(cfg), tmp_path / "run", progress=plain(out), **QUIET)
    text = out.getvalue()
    assert not ESCAPES.search(text), repr(text[:500])
    assert re.search(r"^estimate: 8 runs x [\d,]+ steps to go at .* about \d+:\d\d:\d\d to go",
                     text, re.M), text
    last = df[df.step == 60]
    th = PhaseThresholds()
    fitted = int((last.train_acc >= th.fit_acc).sum())
    generalized = int((last.val_acc >= th.gen_acc).sum())
    diverged = int(last.diverged.sum())
    assert diverged == 4 and fitted > 0, last  # the counts below are not all zero
    final = text.strip().splitlines()[-1]
    assert final.startswith("step 60/60 (100.0%)"), text
    assert (f"fitted {fitted}/8 generalized {generalized}/8 diverged {diverged}/8"
            in final), (final, last)


def test_count_runs_uses_the_phase_thresholds():
    m = dict(train_acc=np.array([0.99, 0.98, 1.0]), val_acc=np.array([0.5, 0.99, 0.989]),
             diverged=np.array([0, 1, 0]))
    assert reporting.count_runs(m) == dict(fitted=2, generalized=1, diverged=1)
    strict = PhaseThresholds(fit_acc=1.0, gen_acc=0.5)
    assert reporting.count_runs(m, strict) == dict(fitted=1, generalized=3, diverged=1)


def test_a_resumed_sweep_reports_from_the_restored_step(tiny_cfg, tmp_path):
    ds = dataset_for(tiny_cfg)

    def kill_at_20(step, state, m):
        if step == 20:
            raise Killed()

    first = io.StringIO()
    with pytest.raises(Killed):  # dies after the checkpoint at step 10
        rundir.run_sweep(tiny_cfg, ds, tmp_path / "run", on_eval=kill_at_20,
                         progress=plain(first), **QUIET)
    assert "steps 0 -> 30;" in first.getvalue()
    again = io.StringIO()
    rundir.run_sweep(tiny_cfg, ds, tmp_path / "run", resume=True, progress=plain(again), **QUIET)
    text = again.getvalue()
    assert text.startswith("progress: 4 runs, steps 10 -> 30 (resumed)"), text
    assert text.strip().splitlines()[-1].startswith("step 30/30"), text
    done = io.StringIO()  # resuming a finished sweep trains nothing and reports the end
    table = rundir.run_sweep(tiny_cfg, ds, tmp_path / "run", resume=True, progress=plain(done),
                             **QUIET)
    assert len(table) == 4 * 4 and "steps 30 -> 30" in done.getvalue(), done.getvalue()
    # on a terminal the bar starts at the restored step
    with pytest.raises(Killed):
        rundir.run_sweep(tiny_cfg, ds, tmp_path / "bar", on_eval=kill_at_20, progress=None,
                         **QUIET)
    tty = FakeTerminal()
    rundir.run_sweep(tiny_cfg, ds, tmp_path / "bar", resume=True,
                     progress=reporting.ProgressOptions(stream=tty), **QUIET)
    draws = [d for d in tty.getvalue().split("\r") if "steps [" in d]
    assert draws and " 10/30 steps" in draws[0] and " 30/30 steps" in draws[-1], draws


def test_the_estimate_names_the_cpu_preset_when_far_too_long():
    out = io.StringIO()
    p = reporting.SweepProgress(288, 100_000, 0, range(0, 100_001, 100), "cpu", plain(out))
    p.trained(1, 30.0)  # the first piece compiles: not timed
    assert "estimate:" not in out.getvalue()
    p.trained(1, 14.4)  # 20 run-steps/s
    text = out.getvalue()
    assert "estimate: 288 runs x 99,998 steps to go at 20.0 run-steps/s" in text, text
    assert "about 399:59:31 (16.7 days) to go" in text, text
    assert "--preset=cpu_grok" in text.splitlines()[-1], text
    quick = io.StringIO()
    p = reporting.SweepProgress(4, 1000, 0, range(0, 1001, 100), "cpu", plain(quick))
    p.trained(1, 5.0)
    p.trained(1, 2.0)  # probe_s of timed training
    assert "about 0:33:16 to go" in quick.getvalue() and "cpu_grok" not in quick.getvalue()


def test_pacer_times_one_step_then_doubles_then_cuts_pieces_of_piece_s():
    p = reporting.Pacer(100_000, 0, (0, 100_000), probe_s=2.0, piece_s=10.0)
    sizes = []
    while not p.ready:
        n = p.piece(p.step, 100_000 - p.step)
        sizes.append(n)
        p.trained(n, 5.0 if not sizes[1:] else n * 0.125)
    assert sizes == [1, 1, 2, 4, 8, 16]  # 1.875 s timed after 15 steps, 3.875 s after 31
    assert p.piece(p.step, 10_000) == 80 and p.piece(p.step, 7) == 7  # 10 s pieces
    assert p.compile_s == 5.0 and p.timed_steps == 31


def test_a_stop_between_evaluations_saves_that_step_and_resumes_exactly(tiny_cfg, tmp_path):
    ds = dataset_for(tiny_cfg)
    full = rundir.run_sweep(tiny_cfg, ds, tmp_path / "full", progress=None, **QUIET)

    class SigtermOnTheNextLine(io.StringIO):
        """Sends SIGTERM with the first progress line after the evaluation at step 0, that is
        after the next piece of training (one step: piece_s=0), between two evaluations."""
        armed = False

        def write(self, text):
            if self.armed and text.startswith("step "):
                self.armed = False
                os.kill(os.getpid(), signal.SIGTERM)
            return super().write(text)

    stream = SigtermOnTheNextLine()

    def arm(step, state, m):
        stream.armed = stream.armed or step == 0

    with pytest.raises(Stopped) as stopped:
        rundir.run_sweep(tiny_cfg, ds, tmp_path / "cut", on_eval=arm,
                         progress=plain(stream, line_every_s=0.0, piece_s=0.0), **QUIET)
    step = stopped.value.step
    assert 0 < step < 10, step  # first evaluation after 0 is at 10
    assert checkpoint.Checkpoints(tmp_path / "cut").steps() == [step]
    assert set(pd.read_csv(tmp_path / "cut" / "metrics.csv").step) == {0}
    msgs = []
    resumed = rundir.run_sweep(tiny_cfg, ds, tmp_path / "cut", resume=True, progress=plain(),
                               log=msgs.append)
    assert any(f"resumed from the checkpoint at step {step}" in m for m in msgs), msgs
    pd.testing.assert_frame_equal(full, resumed, check_exact=True)
    assert ((tmp_path / "cut" / "metrics.csv").read_bytes()
            == (tmp_path / "full" / "metrics.csv").read_bytes())


# ------------------------------------------------------------------------------------------
# TensorBoard
# ------------------------------------------------------------------------------------------


def read_scalars(logdir) -> dict:
    """{tag: [(step, value)]} from the TFRecord event files in `logdir` (read with the
    record framing and tensorboardX's Event proto: no TensorFlow needed)."""
    from tensorboardX.proto import event_pb2

    out: dict = {}
    for name in sorted(os.listdir(logdir)):
        if os.path.isdir(os.path.join(logdir, name)):  # another TensorBoard run (runs/)
            continue
        data = open(os.path.join(logdir, name), "rb").read()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4  # length, its crc, the record, its crc
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def test_tensorboard_writes_per_cell_aggregates(tiny_cfg, tmp_path):
    pytest.importorskip("tensorboardX")
    df = rundir.run_sweep(tiny_cfg, dataset_for(tiny_cfg), tmp_path / "run", tensorboard=True,
                          progress=None, **QUIET)
    scalars = read_scalars(tmp_path / "run" / "tensorboard")
    cells = ("frac0.4", "frac0.7")  # the seeds are aggregated; only fraction varies
    assert set(scalars) == {f"{c}/{k}" for c in cells for k in reporting.TensorBoardCells.SCALARS}
    for frac, cell in zip((0.4, 0.7), cells):
        got = scalars[f"{cell}/val_acc_mean"]
        assert [s for s, _ in got] == [0, 10, 20, 30]
        want = df[df.fraction == frac].groupby("step").val_acc.mean()
        np.testing.assert_allclose([v for _, v in got], want.values, rtol=1e-6)
    runs = read_scalars(tmp_path / "run" / "tensorboard" / "runs")  # one curve per run
    for i, cell in ((0, "frac0.4"), (len(df.run.unique()) - 1, "frac0.7")):
        got = runs[f"{cell}/run_{i}/val_acc"]
        want = df[df.run == i].sort_values("step")
        assert [s for s, _ in got] == list(want.step)
        np.testing.assert_allclose([v for _, v in got], want.val_acc.values, rtol=1e-6)


def test_tensorboard_without_tensorboardx_is_one_line(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboardX" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install -e \"\.\[tensorboard\]\""):
        reporting.require_tensorboardx()
    code = ("import sys, runpy; sys.modules['tensorboardX'] = None; "
            f"sys.path.insert(0, {os.path.join(ROOT, 'experiments')!r}); "
            "sys.argv = ['phase_diagram.py', '--tensorboard', '--preset=cpu_grok', "
            f"'--out={tmp_path / 'run'}']; "
            "runpy.run_path(sys.argv[0] if False else "
            f"{os.path.join(ROOT, 'experiments', 'phase_diagram.py')!r}, run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --tensorboard needs tensorboardX"), \
        r.stderr
    assert not (tmp_path / "run").exists()

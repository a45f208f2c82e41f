"""Reliability: what survives what (docs/reliability.md has the table that points here).

SIGKILL + --resume, corrupt or foreign checkpoints, a damaged metrics.csv, diverging runs, atomic
writes, determinism across processes, fuzzed bad input, and the disk-space check.

Every subprocess shares one persistent JAX compilation cache (a temporary folder), so only the
first launch of a configuration pays for compiling; the cached executables are the same programs,
so this does not change any number. The test of determinism across processes gives its second
process a cache of its own, so that it compiles the programs again.

The tests that launch the CLI in child processes are in the slow tier (`pytest -m slow`).
"""

from __future__ import annotations

import io
import itertools
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, assert_one_line_error, dataset_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jgrok import checkpoint, cli, rundir, sweep, train
from jgrok import tables
from jgrok.config import (ExperimentConfig, ModelConfig, OptimConfig, SweepConfig, TaskConfig,
                          TrainConfig)
from jgrok.data import groups
from jgrok.errors import ConfigError

SCRIPT = os.path.join(ROOT, "experiments", "phase_diagram.py")
CLI_SWEEP = ["--op=add", "--p=7", "--model=mlp", "--mlp_width=16", "--fractions=0.5",
             "--seeds=2", "--steps=60", "--eval_every=5", "--checkpoint_every=10",
             "--nofigures"]
CLI_ROWS = 2 * 13  # 2 runs x evaluations at 0, 5, ..., 60
MARKER = "estimate:"  # printed (jgrok.reporting) once the train loop has compiled and run
CLI_CHECKPOINTS = (10, 20, 30, 40, 50, 60)
QUIET = dict(log=lambda m: None)


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def small_cfg(mlp_width=16, lrs=(1e-3,)) -> ExperimentConfig:
    """The library twin of CLI_SWEEP (a 2-run MLP sweep: 60 steps, evaluated every 5,
    checkpointed every 10), so that every in-process test shares one compilation."""
    return ExperimentConfig(
        task=TaskConfig(op="add", p=7), model=ModelConfig(kind="mlp", mlp_width=mlp_width),
        train=TrainConfig(steps=60, eval_every=5, checkpoint_every=10),
        sweep=SweepConfig(seeds=(0, 1), fractions=(0.5,), weight_decays=(1.0,), lrs=lrs))


class Killed(Exception):
    pass


def kill_at(step):
    def on_eval(s, state, m):
        if s == step:
            raise Killed()
    return on_eval


def one_line(msg: str) -> bool:
    return "\n" not in msg and msg.strip() == msg and msg != ""


@pytest.fixture(scope="module")
def cfg():
    return small_cfg()


@pytest.fixture(scope="module")
def full(cfg, tmp_path_factory):
    """The uninterrupted in-process sweep: (table, run dir)."""
    d = tmp_path_factory.mktemp("full") / "run"
    return rundir.run_sweep(cfg, dataset_for(cfg), d, **QUIET), d


@pytest.fixture(scope="module")
def cut(cfg, tmp_path_factory):
    """A sweep killed (by an exception) after its checkpoints at 10 and 20: copy it before use."""
    d = tmp_path_factory.mktemp("cut") / "run"
    with pytest.raises(Killed):
        rundir.run_sweep(cfg, dataset_for(cfg), d, on_eval=kill_at(30), **QUIET)
    assert checkpoint.Checkpoints(d).steps() == [10, 20]
    return d


def copy_of(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("jax_cache")


def cli_env(cache, **extra):
    return dict(os.environ, PYTHONUNBUFFERED="1", JAX_COMPILATION_CACHE_DIR=str(cache),
                JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0", **extra)


def run_cli(args, cache, timeout=240, **env):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          timeout=timeout, env=cli_env(cache, **env))


class Launch:
    """phase_diagram.py as a child process; `marker` is set once MARKER appears on its output
    (or it exits without it); `on_marker(proc)` runs in the reading thread right then."""

    def __init__(self, args, cache, on_marker=None):
        self.proc = subprocess.Popen([sys.executable, SCRIPT, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=cli_env(cache))
        self.lines: list[str] = []
        self.marker = threading.Event()
        self.on_marker = on_marker
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            if MARKER in line and not self.marker.is_set():
                if self.on_marker is not None:
                    self.on_marker(self.proc)
                self.marker.set()
        self.marker.set()  # exited without it

    def wait(self, timeout=240):
        rc = self.proc.wait(timeout)
        self.reader.join(10)
        return rc

    @property
    def output(self):
        return "".join(self.lines)


@pytest.fixture(scope="module")
def cli_reference(tmp_path_factory, jax_cache):
    """The metrics.csv bytes of an uninterrupted CLI sweep in its own process."""
    out = tmp_path_factory.mktemp("cli_ref") / "run"
    r = run_cli([*CLI_SWEEP, f"--out={out}"], jax_cache)
    assert r.returncode == 0, r.stderr[-3000:]
    return (out / "metrics.csv").read_bytes()


def temp_files(d: Path) -> list[str]:
    return [p.name for p in d.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------------------
# 1. SIGKILL at random moments, then --resume
# ------------------------------------------------------------------------------------------


def checkpoint_steps(out: Path) -> list[int]:
    ck = out / "checkpoints"
    return sorted(int(p.name) for p in ck.iterdir() if p.name.isdigit()) if ck.exists() else []


def resumed_step(output: str):
    m = re.search(r"resumed from the checkpoint at step (\d+)", output)
    return int(m.group(1)) if m else None


def kill_after_checkpoint(run: Launch, out: Path, step: int, delay: float) -> bool:
    """SIGKILL `run` `delay` seconds after its checkpoint at `step` appears; False if it
    ended first."""
    deadline = time.monotonic() + 240  # a limit on waiting, not a measurement
    while run.proc.poll() is None and step not in checkpoint_steps(out):
        assert time.monotonic() < deadline, f"no checkpoint at step {step}"
        time.sleep(0.002)
    time.sleep(delay)
    if run.proc.poll() is not None:
        return False
    run.proc.send_signal(signal.SIGKILL)
    return True


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_bitwise_identical(cli_reference, jax_cache,
                                                                    tmp_path):
    """Launches SIGKILLed at random moments: up to 50 ms after a checkpoint drawn at random,
    at least 20 steps and two checkpoints before the end, so that each launch is still
    training, writing its table or saving when it is killed; each --resume continues from a
    checkpoint at or after the one the kill followed, and the end result is the
    uninterrupted sweep's table byte for byte."""
    rng = random.Random(20240611)
    out = tmp_path / "killed"
    kills, history = 0, []
    for i in range(3):
        latest = max(checkpoint_steps(out), default=0)
        targets = [s for s in CLI_CHECKPOINTS[:-2] if s > latest]
        if not targets:
            break
        target, delay = rng.choice(targets), rng.uniform(0.0, 0.05)
        run = Launch([*CLI_SWEEP, f"--out={out}", *(["--resume"] if i else [])], jax_cache)
        kills += kill_after_checkpoint(run, out, target, delay)
        rc = run.wait()
        assert rc in (0, -signal.SIGKILL), run.output[-3000:]
        assert "Traceback" not in run.output, run.output[-3000:]
        if latest:
            assert resumed_step(run.output) == latest, (history, run.output[-3000:])
        history.append((target, round(delay, 3), rc, checkpoint_steps(out)))
    print("kills (checkpoint step, delay s, exit code, checkpoints left):", history)
    assert kills >= 1, history
    left = checkpoint_steps(out)
    assert left and left[-1] >= history[-1][0], history  # the checkpoint the kill followed
    final = Launch([*CLI_SWEEP, f"--out={out}", "--resume"], jax_cache)
    assert final.wait() == 0, final.output[-3000:]
    assert resumed_step(final.output) == left[-1], (history, final.output[-3000:])
    on_disk = pd.read_csv(out / "metrics.csv")
    assert not on_disk.duplicated(["run", "step"]).any(), history
    assert len(on_disk) == CLI_ROWS, history
    assert (out / "metrics.csv").read_bytes() == cli_reference, history
    assert temp_files(out) == []


# ------------------------------------------------------------------------------------------
# 5. Determinism across processes
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_same_config_gives_bitwise_identical_metrics_in_another_process(cli_reference,
                                                                        tmp_path):
    """The second process has a compilation cache of its own, so it compiles every program
    again: a compilation that varied between processes would change the bytes."""
    out, own_cache = tmp_path / "again", tmp_path / "own_jax_cache"
    r = run_cli([*CLI_SWEEP, f"--out={out}"], own_cache, PYTHONHASHSEED="12345")
    assert r.returncode == 0, r.stderr[-3000:]
    assert any(own_cache.iterdir())  # it compiled into its own cache, not read the shared one
    assert (out / "metrics.csv").read_bytes() == cli_reference


@pytest.mark.slow
def test_in_process_sweep_equals_the_cli_sweep_bitwise(cli_reference, full, jax_cache,
                                                      tmp_path):
    """A third process (this one, one CPU device), through the library instead of the CLI:
    bitwise equal to the CLI on one CPU device (--cpu_devices=1), and equal to float rounding
    to the CLI's default of one device per core (matmuls summed in another order)."""
    out = tmp_path / "one_device"
    r = run_cli([*CLI_SWEEP, f"--out={out}", "--cpu_devices=1"], jax_cache)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (full[1] / "metrics.csv").read_bytes() == (out / "metrics.csv").read_bytes()
    per_core = pd.read_csv(io.BytesIO(cli_reference))
    cols = ["train_loss", "train_acc", "val_loss", "val_acc", "param_norm"]
    np.testing.assert_allclose(per_core[cols], full[0][cols], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------
# 2. Corrupt, partial or foreign checkpoints; a damaged metrics.csv
# ------------------------------------------------------------------------------------------


def test_emptied_latest_checkpoint_directory_falls_back(cfg, full, cut, tmp_path):
    d = copy_of(cut, tmp_path / "run")
    latest = d / "checkpoints" / "20"
    for p in list(latest.iterdir()):
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    msgs = []
    resumed = rundir.run_sweep(cfg, dataset_for(cfg), d, resume=True, log=msgs.append)
    assert any("resumed from the checkpoint at step 10" in m for m in msgs), msgs
    pd.testing.assert_frame_equal(full[0], resumed, check_exact=True)
    assert (d / "metrics.csv").read_bytes() == (full[1] / "metrics.csv").read_bytes()


def test_deleted_latest_checkpoint_directory_falls_back(cfg, full, cut, tmp_path):
    d = copy_of(cut, tmp_path / "run")
    shutil.rmtree(d / "checkpoints" / "20")
    msgs = []
    resumed = rundir.run_sweep(cfg, dataset_for(cfg), d, resume=True, log=msgs.append)
    assert any("resumed from the checkpoint at step 10" in m for m in msgs), msgs
    pd.testing.assert_frame_equal(full[0], resumed, check_exact=True)


def test_a_run_directory_written_before_a_setting_existed_resumes(cfg, full, cut, tmp_path):
    """config.json of an older jgrok lacks settings added since (here model.weight_init): they
    take their defaults, so the directory still resumes, to the same table."""
    import json

    d = copy_of(cut, tmp_path / "run")
    saved = json.loads((d / "config.json").read_text())
    del saved["config"]["model"]["weight_init"]
    (d / "config.json").write_text(json.dumps(saved))
    msgs = []
    resumed = rundir.run_sweep(cfg, dataset_for(cfg), d, resume=True, log=msgs.append)
    assert any("resumed from the checkpoint at step 20" in m for m in msgs), msgs
    pd.testing.assert_frame_equal(full[0], resumed, check_exact=True)


def test_checkpoints_of_another_width_warn_and_start_from_scratch(cfg, full, cut, tmp_path):
    """Checkpoints copied in from a sweep with a different MLP width: every version has the
    wrong shapes, so each is set aside with a warning and the sweep restarts from step 0."""
    wide = small_cfg(mlp_width=24)
    other = tmp_path / "wide"
    engine = sweep.build_engine(wide, dataset_for(wide))
    ck = checkpoint.Checkpoints(other)
    for step in (10, 20):
        ck.save(step, sweep.init_state(engine))
    ck.close()
    d = copy_of(cut, tmp_path / "run")
    shutil.rmtree(d / "checkpoints")
    shutil.copytree(other / "checkpoints", d / "checkpoints")
    msgs = []
    resumed = rundir.run_sweep(cfg, dataset_for(cfg), d, resume=True, log=msgs.append)
    warned = [m for m in msgs if m.startswith("WARNING") and "unreadable" in m]
    assert len(warned) == 2 and "step 20" in warned[0] and "step 10" in warned[1], msgs
    assert any("no readable checkpoint; starting from scratch" in m for m in msgs), msgs
    assert sorted(p.name.split("-")[0] for p in (d / "corrupt_checkpoints").iterdir()) == [
        "10", "20"]
    pd.testing.assert_frame_equal(full[0], resumed, check_exact=True)


def test_resuming_a_run_directory_of_another_width_is_refused_in_one_line(cfg, tmp_path):
    wide = small_cfg(mlp_width=24)
    d = tmp_path / "wide"
    with pytest.raises(Killed):  # killed at its first evaluation: config.json is written
        rundir.run_sweep(wide, dataset_for(wide), d, on_eval=kill_at(0), **QUIET)
    with pytest.raises(ConfigError) as e:
        rundir.run_sweep(cfg, dataset_for(cfg), d, resume=True, **QUIET)
    assert one_line(str(e.value))
    assert "model.mlp_width (saved 24, now 16)" in str(e.value)


def _truncate_rows(text: str) -> str:
    return text[: len(text) * 2 // 3]  # cuts off rows up to the checkpoint, mid-row


def _half_last_row(text: str) -> str:
    lines = text.rstrip("\n").split("\n")  # the last row is one of the step-20 checkpoint
    return "\n".join(lines[:-1] + [lines[-1][: len(lines[-1]) // 2]]) + "\n"


@pytest.mark.parametrize("damage", [
    pytest.param(lambda b: _truncate_rows(b.decode()).encode(), id="truncated"),
    pytest.param(lambda b: _truncate_rows(b.decode()).encode() + b"\x00\xff\xfe garbage \x80",
                 id="truncated+binary-garbage"),
    pytest.param(lambda b: b"run,step\n\x00\x01,,,\n" + bytes(range(256)), id="garbage"),
    pytest.param(lambda b: _half_last_row(b.decode()).encode(), id="half-written-row"),
    pytest.param(lambda b: b + b.decode().splitlines(keepends=True)[-1].encode(),
                 id="duplicated-row"),
])
def test_damaged_metrics_csv_is_refused_in_one_line_naming_the_file(cfg, cut, tmp_path, damage):
    d = copy_of(cut, tmp_path / "run")
    m = d / "metrics.csv"
    m.write_bytes(damage(m.read_bytes()))
    with pytest.raises(ConfigError) as e:
        rundir.run_sweep(cfg, dataset_for(cfg), d, resume=True, **QUIET)
    msg = str(e.value)
    assert one_line(msg) and str(m) in msg and "move it aside" in msg, msg
    # nothing was lost: the checkpoints are untouched
    assert checkpoint.Checkpoints(d).steps() == [10, 20]


def test_damaged_metrics_csv_moved_aside_resumes_with_only_the_new_rows(cfg, full, cut,
                                                                        tmp_path):
    d = copy_of(cut, tmp_path / "run")
    m = d / "metrics.csv"
    m.write_bytes(m.read_bytes()[:50])
    with pytest.raises(ConfigError):
        rundir.run_sweep(cfg, dataset_for(cfg), d, resume=True, **QUIET)
    m.rename(d / "metrics.csv.damaged")
    msgs = []
    resumed = rundir.run_sweep(cfg, dataset_for(cfg), d, resume=True, log=msgs.append)
    assert any("metrics.csv is missing" in x for x in msgs), msgs
    want = full[0][full[0].step >= 20].reset_index(drop=True)
    pd.testing.assert_frame_equal(want, resumed, check_exact=True)


# ------------------------------------------------------------------------------------------
# 3. Diverging runs
# ------------------------------------------------------------------------------------------


HUGE_LR = 1e30  # AdamW steps of about lr: the weights overflow within a few steps


def test_a_diverging_run_is_marked_frozen_and_leaves_the_others_alone(full):
    c = small_cfg(lrs=(1e-3, HUGE_LR))
    with_bad, _ = sweep.train_sweep(c, dataset_for(c))
    alone = full[0]
    bad = with_bad[with_bad.lr == HUGE_LR]
    assert (bad[bad.step > 0].diverged == 1).all() and (bad[bad.step == 0].diverged == 0).all()
    steps = bad[bad.step > 0].diverged_step
    assert (steps > 0).all() and (steps <= 5).all()  # the step it blew up at, per run
    assert (bad[bad.step == 0].diverged_step == -1).all()
    # frozen: the weights (hence their norm) stay as they were at the divergence. The weights
    # are finite (test_diverged_weights_stop_changing); their norm may read inf (at lr 1e30
    # their sum of squares passes float32's range), never NaN
    for _, g in bad[bad.step > 0].groupby("run"):
        assert g.param_norm.nunique() == 1 and not g.param_norm.isna().any()
    good = with_bad[with_bad.lr == 1e-3].drop(columns="run").reset_index(drop=True)
    assert (good.diverged == 0).all() and (good.diverged_step == -1).all()
    pd.testing.assert_frame_equal(good, alone.drop(columns="run"), check_exact=True)


@pytest.mark.parametrize("value, finite", [(0.0, True), (-3e38, True), (np.inf, False),
                                            (-np.inf, False), (np.nan, False)],
                         ids=["zero", "-3e38", "inf", "-inf", "nan"])
def test_the_divergence_check_finds_any_non_finite_weight(value, finite):
    """`train.all_finite` (the divergence rule's test of the weights): false where any value
    is NaN or +-inf, true for finite values however large, their sum of squares included (the
    rule before 2026-12-06 failed those too; see `train.all_finite`)."""
    tree = {"a": np.full((3, 4), 0.5, np.float32),
            "b": {"c": np.array([1.0, value, 2.0], np.float32), "d": np.ones((), np.float32)}}
    assert bool(train.all_finite(tree)) is finite
    big = {"a": np.full((1000,), 1.9e18, np.float32), "b": np.ones((2, 2), np.float32)}
    assert not bool(np.isfinite(train.global_norm(big)))  # the sum of squares overflows
    assert bool(train.all_finite(big))


def test_diverged_weights_stop_changing():
    c = small_cfg(lrs=(1e-3, HUGE_LR))
    engine = sweep.build_engine(c, dataset_for(c))
    state = sweep.advance(engine, sweep.init_state(engine), 10)
    div = np.asarray(jax.device_get(state.diverged))
    assert div.tolist() == [False, False, True, True]
    before = jax.device_get(state.params)
    state = sweep.advance(engine, state, 10)
    after = jax.device_get(state.params)
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
        np.testing.assert_array_equal(a[2:], b[2:])  # the diverged runs: bit for bit
        assert np.isfinite(a[2:]).all()
        assert not np.array_equal(a[:2], b[:2])  # the healthy ones train on


@pytest.mark.parametrize("wave", [1, 4])
def test_waves_checked_once_a_call_equal_the_check_at_every_step_bit_for_bit(wave):
    """`train.train_wave` (the engine's waves: the divergence check once per call, the wave
    trained again where a run diverged) against `train_steps` vmapped over the same waves
    (the check at every step): the same states bit for bit, through a call in which runs
    diverge, then calls with those runs frozen, alone (wave 1) or beside healthy runs
    (waves of 4 over 6 runs: 4 + 2)."""
    c = small_cfg(lrs=(1e-3, HUGE_LR, 3e-3))
    engine = sweep.build_engine(c, dataset_for(c), devices=jax.devices()[:1], wave=0)
    problem, inputs, data = engine.problem, engine.inputs, engine.run_data

    @jax.jit
    def checked_after(state, n):
        return sweep.map_waves(lambda s, d: train.train_wave(problem, inputs, s, d, n),
                               (state, data), wave)

    @jax.jit
    def checked_every_step(state, n):
        return jax.lax.map(lambda sd: train.train_steps(problem, inputs, sd[0], sd[1], n),
                           (state, data), batch_size=wave)

    got = want = sweep.init_state(engine)
    for n in (6, 3, 5):
        got, want = checked_after(got, n), checked_every_step(want, n)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_array_equal(a, b)
    div = np.asarray(want.diverged)
    assert div.tolist() == [False, False, True, True, False, False]  # the HUGE_LR runs
    assert (np.asarray(want.diverged_step)[div] <= 6).all()  # within the first call
    assert (np.asarray(want.step) == 14).all()


# ------------------------------------------------------------------------------------------
# 4. Atomic outputs
# ------------------------------------------------------------------------------------------


def _failing_to_csv(exc):
    real = pd.DataFrame.to_csv

    def to_csv(self, path, *a, **k):
        real(self.head(max(len(self) // 2, 1)), path, *a, **k)  # half the file is written...
        raise exc  # ... then the disk fills up / the user hits ctrl-c

    return to_csv


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()],
                         ids=["disk-full", "ctrl-c"])
def test_an_interrupted_table_write_keeps_the_previous_file(tmp_path, monkeypatch, exc):
    path = tmp_path / "metrics.csv"
    old = pd.DataFrame(dict(run=[0, 1], step=[0, 0], train_acc=[0.1, 0.2], val_acc=[0.0, 0.5]))
    tables.write_csv(old, path)
    before = path.read_bytes()
    monkeypatch.setattr(pd.DataFrame, "to_csv", _failing_to_csv(exc))
    with pytest.raises(type(exc)):
        tables.write_csv(pd.concat([old] * 50), path)
    assert path.read_bytes() == before
    assert temp_files(tmp_path) == []


def test_an_interrupted_json_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    tables.write_json(dict(a=1), path)
    before = path.read_bytes()

    def dump(obj, f, **k):
        f.write('{"a": ')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tables.json, "dump", dump)
    with pytest.raises(OSError):
        tables.write_json(dict(a=2), path)
    assert path.read_bytes() == before and temp_files(tmp_path) == []


def test_a_sweep_interrupted_while_writing_its_table_resumes_exactly(cfg, full, tmp_path,
                                                                    monkeypatch):
    """The table write at the step-20 checkpoint fails half-way: metrics.csv still holds the
    step-10 table, no temporary file remains, and --resume reproduces the full table."""
    d = tmp_path / "run"
    calls = []  # the write at the step-10 checkpoint succeeds, the one at step 20 fails
    real = pd.DataFrame.to_csv

    def to_csv(self, path, *a, **k):
        calls.append(path)
        if len(calls) == 2:
            return _failing_to_csv(OSError(28, "No space left on device"))(self, path, *a, **k)
        return real(self, path, *a, **k)

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
    with pytest.raises(OSError):
        rundir.run_sweep(cfg, dataset_for(cfg), d, **QUIET)
    monkeypatch.undo()
    assert temp_files(d) == []
    assert pd.read_csv(d / "metrics.csv").step.max() == 10
    assert pd.read_csv(d / "metrics.csv").equals(pd.read_csv(full[1] / "metrics.csv").query(
        "step <= 10"))
    assert checkpoint.Checkpoints(d).steps() == [10]
    resumed = rundir.run_sweep(cfg, dataset_for(cfg), d, resume=True, **QUIET)
    pd.testing.assert_frame_equal(full[0], resumed, check_exact=True)


def test_temp_files_left_by_a_killed_write_are_removed_on_resume(cfg, full, cut, tmp_path):
    d = copy_of(cut, tmp_path / "run")
    (d / ".metrics.csv.abc123.tmp").write_text("run,step\n0,")
    msgs = []
    rundir.run_sweep(cfg, dataset_for(cfg), d, resume=True, log=msgs.append)
    assert temp_files(d) == [] and any("interrupted write" in m for m in msgs)


# ------------------------------------------------------------------------------------------
# 6. Bad-input fuzzing
# ------------------------------------------------------------------------------------------

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

NUMBERISH = st.one_of(
    st.sampled_from(["", " ", ",", "1,", ",2", "nan", "inf", "-inf", "1e400", "-0", "0", "1",
                     "0.5", "1.5", "-1", "1e-3", "0:1:3", "0.1:0.9:5", "1:2", "a:b:c", "0:1:0",
                     "0:1:-2", "1_000", "0x10", "٣", "1e3", "2,3,2", "0.2,0.4"]),
    st.integers(-10, 10).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(alphabet="0123456789.,:-+eE naif_x", max_size=12),
    st.text(max_size=6))


def listed(values):
    """A comma-separated list of 1-3 of `values` (their repr: read back exactly), with the
    tuple it stands for."""
    return st.lists(values, min_size=1, max_size=3).map(
        lambda xs: (",".join(repr(x) for x in xs), tuple(xs)))


def valid_or_fuzzed(valid):
    """(text, the tuple it stands for) from `valid`, or (NUMBERISH text, None)."""
    return st.one_of(valid, NUMBERISH.map(lambda text: (text, None)))


POSITIVE = st.floats(1e-4, 10.0)
VALID_LISTS = dict(
    fractions=st.one_of(listed(st.floats(0.01, 1.0)), st.sampled_from([
        ("0.1:0.9:5", (0.1, 0.3, 0.5, 0.7, 0.9)), ("0.5:1:2", (0.5, 1.0))])),
    weight_decays=listed(st.one_of(st.just(0.0), POSITIVE)),
    lrs=listed(POSITIVE),
    init_scales=listed(POSITIVE),
    seed_list=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=3, unique=True).map(
        lambda xs: (",".join(map(str, xs)), tuple(xs))))
# every list valid, or each list valid or fuzzed
LISTS = st.one_of(st.fixed_dictionaries(VALID_LISTS), st.fixed_dictionaries(
    {k: valid_or_fuzzed(v) for k, v in VALID_LISTS.items()}))


def test_fuzzed_lists_parse_into_a_valid_config_or_raise_one_line_config_errors():
    """Lists built from valid values parse to those values and validate; any other text
    validates or raises one-line ConfigErrors. Both kinds of case are reached."""
    reached = Counter()

    @FUZZ
    @given(LISTS)
    def check(fields):
        text = {k: t for k, (t, _) in fields.items()}
        try:
            sw = SweepConfig(seeds=cli.parse_ints(text["seed_list"], "seed_list"),
                             fractions=cli.parse_floats(text["fractions"], "fractions"),
                             weight_decays=cli.parse_floats(text["weight_decays"],
                                                            "weight_decays"),
                             lrs=cli.parse_floats(text["lrs"], "lrs"),
                             init_scales=cli.parse_floats(text["init_scales"], "init_scales"))
            ExperimentConfig(sweep=sw).validate()
        except ConfigError as e:
            assert one_line(str(e)), repr(str(e))
            assert any(want is None for _, want in fields.values()), (fields, str(e))
            reached["error"] += 1
            return
        reached["valid"] += 1
        got = dict(seed_list=sw.seeds, fractions=sw.fractions, weight_decays=sw.weight_decays,
                   lrs=sw.lrs, init_scales=sw.init_scales)
        for k, (_, want) in fields.items():
            assert want is None or got[k] == pytest.approx(want, rel=1e-12), (k, got[k], want)
        assert all(0 < f <= 1 for f in sw.fractions) and all(s >= 0 for s in sw.seeds)
        assert all(np.isfinite(v) and v > 0 for v in sw.lrs + sw.init_scales)
        assert all(np.isfinite(v) and v >= 0 for v in sw.weight_decays)
        assert len(sw.grid()) == sw.n_runs() >= 1

    check()
    assert reached["valid"] >= 15 and reached["error"] >= 15, reached


#: setting -> (valid values, invalid values)
SETTINGS = dict(
    steps=(st.integers(1, 5), st.integers(-3, 0)),
    every=(st.integers(1, 5), st.integers(-3, 0)),
    keep=(st.integers(1, 5), st.integers(-3, 0)),
    batch=(st.one_of(st.none(), st.integers(1, 5)), st.integers(-3, 0)),
    kind=(st.sampled_from(["mlp", "transformer", "dense"]), st.sampled_from(["cnn", ""])),
    heads=(st.sampled_from([1, 2, 4, 8]), st.sampled_from([3, 5])),
    act=(st.sampled_from(["relu", "gelu", "quadratic"]), st.sampled_from(["x", ""])),
    opt=(st.sampled_from(["adamw", "sgd", "adam"]), st.just("lion")),
    loss=(st.sampled_from(["ce", "mse"]), st.just("hinge")))
# every setting valid, or each valid or not: {name: (value, valid)}
SETTING_DRAWS = st.one_of(
    st.fixed_dictionaries({k: ok.map(lambda v: (v, True)) for k, (ok, _) in SETTINGS.items()}),
    st.fixed_dictionaries({k: st.one_of(ok.map(lambda v: (v, True)),
                                        bad.map(lambda v: (v, False)))
                           for k, (ok, bad) in SETTINGS.items()}))


def test_fuzzed_settings_validate_or_raise_one_line_config_errors():
    """Settings drawn from the valid values validate and give an evaluation schedule from 0 to
    `steps`; a mix with invalid values raises a one-line ConfigError (an invalid value passes
    only where the model does not use it). Both kinds of case are reached."""
    reached = Counter()

    @FUZZ
    @given(SETTING_DRAWS)
    def check(drawn):
        v = {k: value for k, (value, _) in drawn.items()}
        c = ExperimentConfig(
            model=ModelConfig(kind=v["kind"], d_model=8, n_heads=v["heads"],
                              mlp_activation=v["act"]),
            optim=OptimConfig(name=v["opt"]),
            train=TrainConfig(steps=v["steps"], eval_every=v["every"],
                              checkpoint_every=v["every"], keep_checkpoints=v["keep"],
                              batch_size=v["batch"], loss=v["loss"]))
        try:
            c.validate()
        except ConfigError as e:
            assert one_line(str(e)), repr(str(e))
            assert not all(ok for _, ok in drawn.values()), (drawn, str(e))
            reached["error"] += 1
            return
        reached["valid"] += 1
        unused = {"heads"} if v["kind"] != "transformer" else set()
        assert all(ok or k in unused for k, (_, ok) in drawn.items()), drawn
        ev = c.train.eval_steps()
        assert ev[0] == 0 and ev[-1] == v["steps"] and list(ev) == sorted(set(ev))
        assert all(b - a <= v["every"] for a, b in zip(ev, ev[1:]))

    check()
    assert reached["valid"] >= 10 and reached["error"] >= 15, reached


def test_parse_floats_expands_start_stop_num_inclusive_and_evenly_spaced():
    assert cli.parse_floats("0.1:0.9:5", "f") == (0.1, 0.3, 0.5, 0.7, 0.9)
    assert cli.parse_floats("0:1:3", "f") == (0.0, 0.5, 1.0)
    assert cli.parse_floats("1:0:3", "f") == (1.0, 0.5, 0.0)
    assert cli.parse_floats("0.25:2:1", "f") == (0.25,)
    assert cli.parse_floats(["0.1:0.9:5"], "f") == (0.1, 0.3, 0.5, 0.7, 0.9)
    for bad, needle in (("a:b:c", "is not start:stop:num"), ("0:1:1.5", "is not start:stop"),
                        ("0:1:0", "num must be in [1, "), ("0:1:-2", "num must be in [1, ")):
        with pytest.raises(ConfigError) as e:
            cli.parse_floats(bad, "fractions")
        assert one_line(str(e.value)) and needle in str(e.value) and "--fractions" in str(
            e.value), str(e.value)


def _brute_force_is_group(t: np.ndarray) -> bool:
    n = len(t)
    es = [e for e in range(n) if all(t[e, x] == x == t[x, e] for x in range(n))]
    return (len(es) == 1
            and all(any(t[a, b] == es[0] == t[b, a] for b in range(n)) for a in range(n))
            and all(t[t[a, b], c] == t[a, t[b, c]]
                    for a in range(n) for b in range(n) for c in range(n)))


LABEL = st.text(alphabet="abexyz01 ,\"'*\t;", min_size=0, max_size=3)


@st.composite
def cayley_text(draw):
    """A CSV that is often nearly a Cayley table: a random table over small labels, sometimes
    a real group (Z_n), with random damage; or plain garbage."""
    kind = draw(st.sampled_from(["table", "group", "garbage", "bytes"]))
    if kind == "garbage":
        return draw(st.text(max_size=80)).encode("utf-8", "surrogatepass")
    if kind == "bytes":
        return draw(st.binary(max_size=80))
    n = draw(st.integers(0, 4))
    labels = draw(st.lists(LABEL, min_size=n, max_size=n)) if kind == "table" else [
        f"g{i}" for i in range(n)]
    if kind == "group":
        entries = [[labels[(i + j) % n] for j in range(n)] for i in range(n)]
    else:
        entries = [[draw(st.sampled_from(labels + ["?"])) for _ in range(n)] for _ in range(n)]
    rows = [["*", *labels]] + [[labels[i], *entries[i]] for i in range(n)]
    if draw(st.booleans()):  # damage: drop / add a cell, drop a row, swap two rows
        how = draw(st.sampled_from(["cell-", "cell+", "row-", "swap", "dup-label"]))
        if rows and how == "cell-" and len(rows[-1]) > 1:
            rows[-1] = rows[-1][:-1]
        elif how == "cell+":
            rows[0] = rows[0] + ["z"]
        elif how == "row-" and len(rows) > 1:
            rows.pop()
        elif how == "swap" and len(rows) > 2:
            rows[1], rows[2] = rows[2], rows[1]
        elif how == "dup-label" and n > 1:
            rows[0][2] = rows[0][1]
    sep = draw(st.sampled_from([",", ", ", ";"]))
    return "\n".join(sep.join(r) for r in rows).encode()


@FUZZ
@given(data=cayley_text())
def test_fuzzed_cayley_csv_loads_a_group_or_raises_config_error(data, tmp_path):
    path = tmp_path / "table.csv"
    path.write_bytes(data)
    try:
        labels, table = groups.load_cayley_csv(path)
    except ConfigError as e:
        assert one_line(str(e)), repr(str(e))
        return
    n = len(labels)
    assert table.shape == (n, n) and len(set(labels)) == n
    assert _brute_force_is_group(table)


FLAG_VALUES = {
    "fractions": ["0.5", "0.3,0.6", "0", "1.2", "nan", "0:1:3", "x", ""],
    "lrs": ["1e-3", "0", "-1", "inf", "1e400", "a,b"],
    "weight_decays": ["0", "1", "-0.5", "nan", ","],
    "seeds": ["1", "0", "-2", "1.5", "x"],
    "seed_list": ["3", "0,1", "-1", "a", "1.0"],
    "p": ["5", "7", "1", "0", "-7", "100001", "seven"],
    "op": ["add", "sub", "div", "foo", "group:dihedral_d10", "group:/no/such.csv", "group:"],
    "mlp_width": ["8", "0", "-4", "w"],
    "eval_every": ["1", "0", "-1"],
    "checkpoint_every": ["1", "0", "-5"],
    "keep_checkpoints": ["1", "0", "-1"],
    "batch_size": ["-1", "0", "4", "-3"],
    "optimizer": ["adamw", "sgd", "lion", ""],
    "loss": ["ce", "mse", "hinge"],
    "mlp_activation": ["gelu", "quadratic", "swish"],
    "init_scales": ["1", "0.5", "0", "-1"],
}


RUN_NUMBER = itertools.count()


@pytest.mark.slow
@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(flags=st.dictionaries(st.sampled_from(sorted(FLAG_VALUES)), st.just(None), min_size=1,
                             max_size=3).flatmap(
    lambda d: st.fixed_dictionaries({k: st.sampled_from(FLAG_VALUES[k]) for k in d})),
       junk=st.sampled_from(["", "", "", "--nosuchflag=1", "extra_positional"]))
def test_fuzzed_cli_invocations_exit_0_or_2_with_one_error_line(flags, junk, tmp_path,
                                                                 jax_cache):
    out = tmp_path / f"run{next(RUN_NUMBER)}"
    args = ["--op=add", "--p=5", "--model=mlp", "--mlp_width=8", "--fractions=0.5",
            "--seeds=1", "--steps=1", "--eval_every=1", "--nofigures"]
    args += [f"--{k}={v}" for k, v in flags.items()] + ([junk] if junk else [])
    r = run_cli([*args, f"--out={out}"], jax_cache)
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.returncode in (0, 2), (args, r.returncode, r.stderr[-3000:])
    if r.returncode == 2:
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, r.stderr)
    else:
        assert len(pd.read_csv(out / "metrics.csv")) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("args, needle", [
    (["--seeds=1000000000"], "--seeds=1000000000 must be in [1, 1,000,000]"),
    (["--fractions=0.1:0.9:100000000"], "num must be in [1, 1,000,000]"),
    (["--mlp_width=100000000"], "mlp_width=100000000 must be in [1, 65536]"),
    (["--seed_list=99999999999"], "seed 99999999999 must be an integer in [0, 2**32)"),
    (["--seeds=1000", "--fractions=0.01:1:1000", "--weight_decays=0,1"],
     "the sweep has 2,000,000 runs"),
    (["--seeds=8", "--memory_gb=0.00001"], "the grid does not fit in device memory: "),
])
def test_huge_sizes_are_refused_in_one_line_before_anything_is_built(args, needle, tmp_path,
                                                                      jax_cache):
    base = ["--op=add", "--p=5", "--model=mlp", "--steps=1", "--nofigures"]
    r = run_cli([*base, *args, f"--out={tmp_path / 'o'}"], jax_cache)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], r.stderr[-2000:]
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------
# 7. Disk space
# ------------------------------------------------------------------------------------------


def test_check_disk_refuses_in_one_line_when_the_filesystem_is_too_small(cfg, tmp_path):
    engine = sweep.build_engine(cfg, dataset_for(cfg))
    state = sweep.init_state(engine)
    need = rundir.check_disk(tmp_path / "new" / "run", state, keep=3, free_bytes=10**12,
                             metrics_rows=8)
    leaves = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
    assert need >= 4 * leaves  # keep + 1 versions of the whole state
    with pytest.raises(ConfigError) as e:
        rundir.check_disk(tmp_path / "new" / "run", state, keep=3, free_bytes=need - 1,
                          metrics_rows=8)
    assert one_line(str(e.value)) and "not enough disk space" in str(e.value)
    assert "--keep_checkpoints" in str(e.value)


def test_a_sweep_that_cannot_fit_is_refused_before_writing_anything(cfg, tmp_path,
                                                                    monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(rundir.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=4096))
    d = tmp_path / "run"
    with pytest.raises(ConfigError, match="not enough disk space"):
        rundir.run_sweep(cfg, dataset_for(cfg), d, **QUIET)
    assert not d.exists()


def test_resume_counts_the_space_its_checkpoints_already_use(cfg, full):
    engine = sweep.build_engine(cfg, dataset_for(cfg))
    state = sweep.init_state(engine)
    fresh = rundir.check_disk(full[1].parent / "elsewhere", state, keep=3, free_bytes=10**12)
    again = rundir.check_disk(full[1], state, keep=3, free_bytes=10**12)
    assert again < fresh


# ------------------------------------------------------------------------------------------
# Preemption: SIGTERM / SIGINT save a checkpoint at the step reached
# ------------------------------------------------------------------------------------------
SIGNAL_SWEEP = ["--op=add", "--p=7", "--model=mlp", "--mlp_width=16", "--fractions=0.5",
                "--seeds=2", "--steps=1500", "--eval_every=5", "--checkpoint_every=100000",
                "--nofigures"]  # no regular checkpoint before the last step


@pytest.fixture(scope="module")
def signal_reference(tmp_path_factory, jax_cache):
    """metrics.csv bytes of the uninterrupted SIGNAL_SWEEP."""
    out = tmp_path_factory.mktemp("signal_ref") / "run"
    ref = run_cli([*SIGNAL_SWEEP, f"--out={out}"], jax_cache)
    assert ref.returncode == 0, ref.stderr[-3000:]
    return (out / "metrics.csv").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_a_checkpoint_at_the_step_reached_and_resume_is_exact(
        sig, signal_reference, jax_cache, tmp_path):
    out = tmp_path / "stopped"
    run = Launch([*SIGNAL_SWEEP, f"--out={out}"], jax_cache)
    assert run.marker.wait(240), "no progress marker"
    run.proc.send_signal(sig)
    rc = run.wait()
    assert rc == 128 + sig, (rc, run.output[-3000:])
    m = re.search(rf"stopped by {sig.name} at step (\d+); the checkpoint", run.output)
    assert m and "Traceback" not in run.output, run.output[-3000:]
    step = int(m.group(1))
    assert 0 < step < 1500  # served at the next piece of training, between evaluations too
    assert checkpoint.Checkpoints(out).steps() == [step]
    table = pd.read_csv(out / "metrics.csv")  # every evaluation up to the step reached
    assert table["step"].max() == step - step % 5 and len(table) == 2 * (step // 5 + 1)
    final = run_cli([*SIGNAL_SWEEP, f"--out={out}", "--resume"], jax_cache)
    assert final.returncode == 0, final.stderr[-3000:]
    assert f"resumed from the checkpoint at step {step}" in final.stdout
    assert (out / "metrics.csv").read_bytes() == signal_reference

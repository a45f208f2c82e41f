"""Run directories: checkpoints, exact resume, config checks, sharding, the CLI."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, dataset_for

from jgrok import checkpoint, rundir
from jgrok.errors import ConfigError


class Killed(Exception):
    pass


def _kill_at(step):
    def on_eval(s, state, m):
        if s == step:
            raise Killed()
    return on_eval


def test_kill_and_resume_equals_uninterrupted_exactly(tiny_cfg, tmp_path):
    ds = dataset_for(tiny_cfg)
    full = rundir.run_sweep(tiny_cfg, ds, tmp_path / "full", log=lambda m: None)
    with pytest.raises(Killed):  # dies after the checkpoint at step 10, before the one at 20
        rundir.run_sweep(tiny_cfg, ds, tmp_path / "cut", on_eval=_kill_at(20),
                         log=lambda m: None)
    assert checkpoint.Checkpoints(tmp_path / "cut").steps() == [10]
    msgs = []
    resumed = rundir.run_sweep(tiny_cfg, ds, tmp_path / "cut", resume=True, log=msgs.append)
    assert any("resumed from the checkpoint at step 10" in m for m in msgs)
    pd.testing.assert_frame_equal(full, resumed, check_exact=True)
    on_disk = pd.read_csv(tmp_path / "cut" / "metrics.csv")
    assert not on_disk.duplicated(["run", "step"]).any()
    assert len(on_disk) == 4 * 4
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "full" / "metrics.csv"), on_disk)


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(tiny_cfg, tmp_path):
    ds = dataset_for(tiny_cfg)
    full = rundir.run_sweep(tiny_cfg, ds, tmp_path / "full", log=lambda m: None)
    with pytest.raises(Killed):
        rundir.run_sweep(tiny_cfg, ds, tmp_path / "cut", on_eval=_kill_at(30),
                         log=lambda m: None)
    ck = tmp_path / "cut" / "checkpoints"
    assert sorted(int(p.name) for p in ck.iterdir() if p.name.isdigit()) == [10, 20]
    # truncate every data file of the newest checkpoint
    for root, _, files in os.walk(ck / "20"):
        for f in files:
            path = os.path.join(root, f)
            with open(path, "r+b") as fh:
                fh.truncate(max(os.path.getsize(path) // 3, 0))
    msgs = []
    resumed = rundir.run_sweep(tiny_cfg, ds, tmp_path / "cut", resume=True, log=msgs.append)
    assert any("step 20" in m and "unreadable" in m for m in msgs), msgs
    assert any("resumed from the checkpoint at step 10" in m for m in msgs)
    pd.testing.assert_frame_equal(full, resumed, check_exact=True)


def test_resume_with_a_different_config_is_refused_naming_the_settings(tiny_cfg, tmp_path):
    ds = dataset_for(tiny_cfg)
    rundir.run_sweep(tiny_cfg, ds, tmp_path / "a", log=lambda m: None)
    other = dataclasses.replace(tiny_cfg, train=dataclasses.replace(tiny_cfg.train, steps=40))
    with pytest.raises(ConfigError, match=r"config differs in train.steps \(saved 30, now 40\)"):
        rundir.run_sweep(other, ds, tmp_path / "a", resume=True, log=lambda m: None)
    with pytest.raises(ConfigError, match="already holds a sweep"):
        rundir.run_sweep(tiny_cfg, ds, tmp_path / "a", log=lambda m: None)


def test_stored_sentinels_log_eval_0_and_batch_size_0_resume_as_none_and_full(tiny_cfg,
                                                                              tmp_path):
    """Run directories written before 2026-12-02 store the old sentinels `log_eval: 0` ("no
    log-spaced evaluations") and `batch_size: 0` (full batch); they read as None and "full",
    so those directories still resume. The sentinels themselves are refused now."""
    cfg = dataclasses.replace(tiny_cfg, train=dataclasses.replace(tiny_cfg.train,
                                                                  batch_size="full"))
    ds = dataset_for(cfg)
    assert cfg.train.log_eval is None
    with pytest.raises(Killed):
        rundir.run_sweep(cfg, ds, tmp_path / "old", on_eval=_kill_at(20), log=lambda m: None)
    path = tmp_path / "old" / "config.json"
    meta = json.loads(path.read_text())
    assert meta["config"]["train"]["batch_size"] == "full"
    meta["config"]["train"].update(log_eval=0, batch_size=0)
    path.write_text(json.dumps(meta))
    msgs = []
    rundir.run_sweep(cfg, ds, tmp_path / "old", resume=True, log=msgs.append)
    assert any("resumed from the checkpoint at step 10" in m for m in msgs)
    for kw, msg in ((dict(log_eval=0), "log_eval=0 must be >= 1, or none"),
                    (dict(batch_size=0), "batch_size=0 must be a positive integer, 'full'"),
                    (dict(batch_size="half"), "batch_size='half' must be")):
        with pytest.raises(ConfigError, match=msg):
            dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **kw)).validate()


def test_an_explicit_schedule_stands_in_for_eval_every_and_log_eval_on_resume(tiny_cfg,
                                                                             tmp_path):
    """With run_sweep(eval_steps=...) the saved schedule is compared on --resume, and the
    config's eval_every / log_eval (which it replaces) are not; without one they are."""
    ds = dataset_for(tiny_cfg)
    quiet = dict(log=lambda m: None, eval_steps=[0, 5, 10, 30])
    with pytest.raises(Killed):
        rundir.run_sweep(tiny_cfg, ds, tmp_path / "a", on_eval=_kill_at(30), **quiet)
    other = dataclasses.replace(tiny_cfg, train=dataclasses.replace(
        tiny_cfg.train, eval_every=7, log_eval=4))
    rundir.run_sweep(other, ds, tmp_path / "a", resume=True, **quiet)
    with pytest.raises(ConfigError, match="evaluation steps differ"):
        rundir.run_sweep(other, ds, tmp_path / "a", resume=True, log=lambda m: None,
                         eval_steps=[0, 10, 30])
    rundir.run_sweep(tiny_cfg, ds, tmp_path / "b", log=lambda m: None)
    with pytest.raises(ConfigError, match="config differs in train.eval_every"):
        rundir.run_sweep(other, ds, tmp_path / "b", resume=True, log=lambda m: None)


def test_config_json_and_extracting_one_runs_params(tiny_cfg, tmp_path):
    ds = dataset_for(tiny_cfg)
    rundir.run_sweep(tiny_cfg, ds, tmp_path / "a", log=lambda m: None)
    meta = json.loads((tmp_path / "a" / "config.json").read_text())
    assert meta["config"]["train"]["steps"] == 30 and meta["n_runs"] == 4
    assert "jax" in meta["versions"] and len(meta["grid"]) == 4
    step, raw = checkpoint.load_raw(tmp_path / "a")
    assert step == 30
    run = checkpoint.find_run(meta["grid"], seed=1, fraction=0.7)
    p = checkpoint.run_params(raw, run)
    assert p["unembed"]["kernel"].shape == (16, 9)
    with pytest.raises(ConfigError, match="no run"):
        checkpoint.find_run(meta["grid"], seed=5)
    s2, coords, p2 = checkpoint.extract_run(tmp_path / "a", seed=1, fraction=0.7)
    assert s2 == 30 and coords["seed"] == 1 and coords["fraction"] == 0.7
    np.testing.assert_array_equal(p2["unembed"]["kernel"], p["unembed"]["kernel"])


SHARD_SCRIPT = r"""
import os, sys, dataclasses, numpy as np, jax
sys.path.insert(0, {root!r}); sys.path.insert(0, os.path.join({root!r}, "tests"))
from conftest import dataset_for
from jgrok import sweep
from jgrok.config import *
assert jax.device_count() == 4
cfg = ExperimentConfig(task=TaskConfig(op="add", p=7),
    model=ModelConfig(kind="transformer", n_layers=1, d_model=16, n_heads=2),
    train=TrainConfig(steps=20, eval_every=10, batch_size=8),
    sweep=SweepConfig(seeds=(0, 1, 2), fractions=(0.5,), weight_decays=(0.0, 1.0)))
ds = dataset_for(cfg)
a, sa = sweep.train_sweep(cfg, ds)                       # 6 runs padded to 8 on 4 devices
b, sb = sweep.train_sweep(cfg, ds, devices=jax.devices()[:1])
assert len(sa.step.sharding.device_set) == 4
cols = ["train_loss", "train_acc", "val_loss", "val_acc", "param_norm", "last_layer_norm"]
np.testing.assert_allclose(a[cols].to_numpy(), b[cols].to_numpy(), rtol=1e-5, atol=1e-6)
print("SHARDED_OK", len(a))

# a run directory checkpointed on one device (6 runs, no padding) resumes on four (padded to 8)
# and the other way round: the checkpoint is re-padded, not set aside as unreadable
from jgrok import rundir
from jgrok.errors import ConfigError
cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, eval_every=5,
                                                         checkpoint_every=10))
def stop_at(step):
    def on_eval(s, state, m):
        if s == step:
            raise KeyboardInterrupt
    return on_eval
ref = rundir.run_sweep(cfg, ds, os.path.join({tmp!r}, "ref"), log=lambda m: None)
for first, then in ((jax.devices()[:1], None), (None, jax.devices()[:1])):
    d = os.path.join({tmp!r}, "one" if first else "four")
    try:
        rundir.run_sweep(cfg, ds, d, devices=first, on_eval=stop_at(15), log=lambda m: None)
    except KeyboardInterrupt:
        pass
    logs = []
    out = rundir.run_sweep(cfg, ds, d, devices=then, resume=True, log=logs.append)
    assert any("resumed from the checkpoint at step 10" in m for m in logs), logs
    assert not any("unreadable" in m for m in logs), logs
    np.testing.assert_allclose(out[cols].to_numpy(), ref[cols].to_numpy(), rtol=1e-5, atol=1e-6)
print("REPADDED_OK")
"""


@pytest.mark.slow
def test_sharded_over_four_host_devices_equals_one_device_and_resumes_on_either(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", SHARD_SCRIPT.format(root=ROOT, tmp=str(tmp_path))],
                       env=env, capture_output=True, text=True, timeout=300)
    assert "SHARDED_OK 18" in r.stdout, r.stderr[-3000:]
    assert "REPADDED_OK" in r.stdout, r.stderr[-3000:]


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "phase_diagram.py"),
                           *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("args,needle", [
    (["--op=foo"], "unknown operation 'foo'"),
    (["--fractions=0.5,1.2"], "training fraction 1.2 is outside (0, 1)"),
    (["--fractions=0:1:3"], "training fraction 0.0 is outside (0, 1)"),
    (["--op=div", "--p=91"], "p=91 is not prime"),
    (["--op=div_odd_sub_even", "--p=15"], "not prime"),
    (["--steps=abc"], "steps"),
    (["--model=cnn"], "unknown model 'cnn'"),
    (["--op=group:/nonexistent/table.csv"], "table.csv"),
])
def test_cli_bad_input_exits_2_with_one_line(args, needle, tmp_path):
    r = _cli(*args, f"--out={tmp_path / 'x'}")
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_cli_trains_writes_table_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["--op=add", "--p=7", "--model=mlp", "--mlp_width=16", "--fractions=0.5",
            "--seeds=2", "--steps=20", "--eval_every=5", "--checkpoint_every=10",
            f"--out={out}", "--nofigures"]
    r = _cli(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "= 2 runs" in r.stdout and "run-steps/s" in r.stderr  # progress: on stderr
    df = pd.read_csv(out / "metrics.csv")
    assert len(df) == 2 * 5 and {"seed", "fraction", "weight_decay", "lr"} <= set(df.columns)
    r2 = _cli(*args)
    assert r2.returncode == 2 and "--resume" in r2.stderr
    r3 = _cli(*args, "--resume")
    assert r3.returncode == 0 and "resumed from the checkpoint at step 20" in r3.stdout


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["existing_file", "under_a_file", "unwritable"])
def test_bad_out_paths_are_refused_in_one_line(kind, tmp_path):
    f = tmp_path / "a_file"
    f.write_text("finished results\n")
    out = {"existing_file": f, "under_a_file": f / "run", "unwritable": "/proc/jgrok_run"}[kind]
    needle = {"existing_file": "is an existing file", "under_a_file": "which is a file",
              "unwritable": "cannot write the run directory"}[kind]
    r = _cli("--op=add", "--p=7", "--model=mlp", "--mlp_width=8", "--fractions=0.5",
             "--steps=2", f"--out={out}", "--nofigures")
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert f.read_text() == "finished results\n"  # nothing lost


def test_per_step_log_and_hook_columns_resume_exactly(tiny_cfg, tmp_path):
    """A per-step logger's steps.csv and the extra columns an on_eval hook returns survive a
    kill and resume: both tables equal those of an uninterrupted sweep."""
    from jgrok import slingshot

    ds = dataset_for(tiny_cfg)

    def step_log(engine, state, n):
        state, losses, norms = slingshot.advance_logged(engine, state, n)
        return state, dict(loss=losses, last_layer_norm=norms)

    def hook(step, state, m):
        return dict(twice_val_acc=2 * m["val_acc"], step_again=[step] * len(m["val_acc"]))

    def killing_hook(step, state, m):
        if step == 20:
            raise Killed()
        return hook(step, state, m)

    kw = dict(step_log=step_log, log=lambda m: None, coords=dict(variant="v"))
    full = rundir.run_sweep(tiny_cfg, ds, tmp_path / "full", on_eval=hook, **kw)
    with pytest.raises(Killed):
        rundir.run_sweep(tiny_cfg, ds, tmp_path / "cut", on_eval=killing_hook, **kw)
    resumed = rundir.run_sweep(tiny_cfg, ds, tmp_path / "cut", resume=True, on_eval=hook, **kw)
    pd.testing.assert_frame_equal(full, resumed, check_exact=True)
    np.testing.assert_array_equal(full.twice_val_acc, 2 * full.val_acc)
    assert list(full.columns[:2]) == ["run", "variant"]
    steps_full = pd.read_csv(tmp_path / "full" / "steps.csv")
    pd.testing.assert_frame_equal(steps_full, pd.read_csv(tmp_path / "cut" / "steps.csv"))
    assert len(steps_full) == 4 * 30 and set(steps_full.step) == set(range(30))
    # the per-step loss at step 0 is the loss of the initial weights on the first batch
    assert steps_full.loss.notna().all() and (steps_full.last_layer_norm > 0).all()

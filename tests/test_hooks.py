"""The hooks around the loop (jgrok.hooks) and the metric writers (jgrok.writers)."""

from __future__ import annotations

import dataclasses
import types

import pandas as pd
import pytest
from conftest import dataset_for

from jgrok import hooks, rundir, tables

QUIET = dict(log=lambda m: None, progress=None)


def _rows(step, val, diverged=None):
    return [dict(run=i, step=step, val_acc=v, diverged=int(bool(diverged and diverged[i])))
            for i, v in enumerate(val)]


def _decider(k, history):
    loop = hooks.Loop(types.SimpleNamespace(n_runs=len(history[0][1])), (), 0, [])
    hook = hooks.StopWhenDecided(loop, k)
    ends = []
    for step, val, *div in history:
        loop.new_rows = _rows(step, val, *div)
        loop.rows.extend(loop.new_rows)
        ends.append(bool(hook.after_eval(step, None, {})))
    return ends, loop


def test_stop_when_decided_needs_k_evaluations_in_a_row_or_divergence():
    # run 0 generalizes at 10, dips at 20, holds from 30; run 1 diverges at 20
    history = [(0, [0.1, 0.1]), (10, [0.995, 0.5]), (20, [0.9, 0.5], [0, 1]),
               (30, [0.99, 0.5], [0, 1]), (40, [1.0, 0.5], [0, 1])]
    ends, loop = _decider(2, history)
    assert ends == [False, False, False, False, True] and loop.finish
    ends, _ = _decider(1, history)
    assert ends == [False, False, False, True, True]
    # an undecided run (never generalized, not diverged) keeps the sweep going
    ends, _ = _decider(1, [(s, [1.0, 0.98]) for s in (0, 10, 20)])
    assert ends == [False, False, False]


def test_a_resumed_decided_sweep_is_finished_from_its_rows():
    loop = hooks.Loop(types.SimpleNamespace(n_runs=2), (), 20,
                      _rows(10, [0.995, 1.0]) + _rows(20, [1.0, 0.999]))
    hooks.StopWhenDecided(loop, 2)
    assert loop.finish


def test_a_decided_sweep_ends_early_with_the_uninterrupted_rows(tiny_cfg, tmp_path,
                                                               monkeypatch):
    # the decision rule is tested above; here the loop's end: every run decided at step 20
    from jgrok.checkpoint import Checkpoints

    ds = dataset_for(tiny_cfg)
    full = rundir.run_sweep(tiny_cfg, ds, tmp_path / "full", **QUIET)
    monkeypatch.setattr(hooks.StopWhenDecided, "decided",
                        lambda self: bool(self.loop.new_rows)
                        and self.loop.new_rows[0]["step"] >= 20)
    cfg = dataclasses.replace(tiny_cfg, train=dataclasses.replace(tiny_cfg.train,
                                                                  checkpoint_every=1000,
                                                                  stop_when_decided=1))
    df = rundir.run_sweep(cfg, ds, tmp_path / "stop", **QUIET)
    pd.testing.assert_frame_equal(df, full[full.step <= 20].reset_index(drop=True))
    assert len(tables.read_metrics(tmp_path / "stop" / "metrics.csv")) == len(df)
    ck = Checkpoints(tmp_path / "stop")
    assert ck.steps() == [20]  # the checkpoint of the end, though checkpoint_every is 1000
    ck.close()


def test_an_undecided_sweep_runs_to_the_end(tiny_cfg, tmp_path):
    ds = dataset_for(tiny_cfg)
    full = rundir.run_sweep(tiny_cfg, ds, tmp_path / "full", **QUIET)
    assert (full[full.step == full.step.max()].val_acc < 0.99).any()  # undecided
    cfg = dataclasses.replace(tiny_cfg, train=dataclasses.replace(tiny_cfg.train,
                                                                  stop_when_decided=1))
    pd.testing.assert_frame_equal(rundir.run_sweep(cfg, ds, tmp_path / "stop", **QUIET), full)

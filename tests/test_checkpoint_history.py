"""Checkpoint history (`TrainConfig.keep_checkpoint_every`): which versions survive, and that
a run's parameters at a kept step are those of the same run trained to that step."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

import jgrok
from jgrok.checkpoint import Checkpoints, versions_kept
from jgrok.config import TrainConfig


@pytest.mark.parametrize("keep_every, kept", [
    (None, [97]),
    # the nearest to 0, 25, 50 and 100 (19 is nearer 25 than 33 is), and the last
    (25, [7, 19, 52, 97]),
])
def test_history_keeps_the_version_nearest_each_multiple_besides_the_last(tmp_path, keep_every,
                                                                        kept):
    ck = Checkpoints(tmp_path, keep=1, keep_every=keep_every)
    for step in (7, 19, 33, 52, 97):  # log-spaced evaluation steps: off the multiples
        ck.save(step, {"w": np.full((2, 3), step, np.float32)})
    assert ck.steps() == kept
    ck.close()


def test_versions_kept_bounds_the_disk_estimate():
    assert versions_kept(TrainConfig(steps=1000, checkpoint_every=100, keep_checkpoints=3)) == 3
    # at most one per 250 steps (0, 250, ..., 1000) besides the last 3
    assert versions_kept(TrainConfig(steps=1000, checkpoint_every=100, keep_checkpoints=3,
                                     keep_checkpoint_every=250)) == 3 + 5
    # never more than there are saves
    assert versions_kept(TrainConfig(steps=1000, checkpoint_every=500, keep_checkpoints=1,
                                     keep_checkpoint_every=10)) == 1 + 3


def test_keep_checkpoint_every_must_be_positive():
    with pytest.raises(jgrok.ConfigError, match="keep_checkpoint_every=0 must be >= 1"):
        jgrok.make_config("cpu_grok", keep_checkpoint_every=0)


def _cfg(steps, **kw):
    return jgrok.make_config("cpu_grok", p=11, steps=steps, fractions=[0.6], init_scales=[1.0],
                             seeds=2, log_eval=None, eval_every=10, **kw)


def test_a_sweep_keeps_its_history_and_params_at_a_kept_step_equal_a_run_trained_to_it(
        tmp_path):
    cfg = _cfg(60, checkpoint_every=10, keep_checkpoints=1, keep_checkpoint_every=20)
    result = jgrok.run(cfg, tmp_path / "run", progress=False, log=lambda _: None)
    # saves at 10, ..., 60; nearest to 0, 20, 40, 60 (10 and 30 are ties that round to even)
    assert result.checkpoint_steps() == [10, 20, 40, 60]
    assert jgrok.load(tmp_path / "run").checkpoint_steps() == [10, 20, 40, 60]

    got = result.params(step=20, seed=1)
    assert got.step == 20 and got.coords["seed"] == 1
    want = jgrok.run(_cfg(20)).params(seed=1)
    assert want.step == 20
    for a, b in zip(_leaves(got.params), _leaves(want.params)):
        np.testing.assert_array_equal(a, b)
    # and not those of the final step
    final = result.params(seed=1).params
    assert not all(np.array_equal(a, b) for a, b in zip(_leaves(final), _leaves(got.params)))
    with pytest.raises(jgrok.ConfigError, match="no checkpoint at step 30"):
        result.params(step=30, seed=1)
    # the history setting may change on resume (a finished sweep is reopened, nothing deleted)
    again = jgrok.run(dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, keep_checkpoint_every=None)), tmp_path / "run", resume=True, progress=False,
        log=lambda _: None)
    assert again.checkpoint_steps() == [10, 20, 40, 60]
    pd.testing.assert_frame_equal(again.metrics, result.metrics)


def _leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]

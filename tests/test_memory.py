"""Device memory planning: a device that cannot hold all runs' temporaries trains them in waves,
with the same results; a grid whose states do not fit is refused in one line."""

import dataclasses
import math

import jax
import numpy as np
import pytest
from conftest import dataset_for

from jgrok import memory, sweep, train
from jgrok.config import SweepConfig
from jgrok.errors import ConfigError


def test_plan_wave_known_answers():
    rb = memory.RunBytes(state=100, temp=1000, shared=500)
    # 80% of the limit = 500 shared + 2 x 10 x 100 states + 3500 left: 3 runs' temporaries fit
    limit = (500 + 2000 + 3500) / memory.HEADROOM
    assert memory.plan_wave(10, rb, limit, preferred=0) == 3
    assert memory.plan_wave(10, rb, limit, preferred=2) == 2  # a smaller preference is kept
    assert memory.plan_wave(10, rb, limit, preferred=5) == 3
    assert memory.plan_wave(3, rb, limit, preferred=0) == 0  # all fit: one vmap
    with pytest.raises(ConfigError) as e:
        memory.plan_wave(10, rb, (500 + 2000 + 999) / memory.HEADROOM)
    msg = str(e.value)
    assert "\n" not in msg and "does not fit in device memory" in msg and "10 runs" in msg


def test_measured_state_is_params_and_adam_moments(tiny_cfg):
    ds = dataset_for(tiny_cfg)
    eng = sweep.build_engine(tiny_cfg, ds)
    one = jax.tree.map(lambda a: np.asarray(a)[0], eng.run_data)
    rb = memory.measure_run_bytes(eng.problem, ds.inputs, ds.targets, one)
    params = sweep.init_state(eng).params
    p_bytes = sum(math.prod(a.shape[1:]) * a.dtype.itemsize for a in jax.tree.leaves(params))
    d_bytes = sum(a.nbytes for a in jax.tree.leaves(one))
    # params + Adam's two moments, plus a few scalars (step, key, counts, hyperparameters)
    assert 3 * p_bytes <= rb.state - d_bytes < 3 * p_bytes + 1024
    assert rb.temp > 0 and rb.shared == ds.inputs.nbytes + ds.targets.nbytes


@pytest.mark.slow
def test_waves_chosen_from_a_memory_limit_give_the_same_runs(tiny_cfg):
    cfg = dataclasses.replace(
        tiny_cfg, model=dataclasses.replace(tiny_cfg.model, kind="mlp", mlp_width=32),
        sweep=SweepConfig(seeds=(0, 1, 2), fractions=(0.3, 0.5), weight_decays=(0.0, 1.0)))
    ds = dataset_for(cfg)
    ref_df, ref = sweep.train_sweep(cfg, ds, wave=0)
    eng = sweep.build_engine(cfg, ds, wave=0)
    one = jax.tree.map(lambda a: np.asarray(a)[0], eng.run_data)
    rb = memory.measure_run_bytes(eng.problem, ds.inputs, ds.targets, one)
    n = eng.n_runs
    assert n == 12
    limit = (rb.shared + memory.STATE_COPIES * n * rb.state + 5.5 * rb.temp) / memory.HEADROOM
    waved = sweep.build_engine(cfg, ds, wave=0, memory_limit=int(limit))
    assert waved.wave == 5  # 12 runs in waves of 5, 5 and 2
    state = sweep.init_state(waved)
    rows = []
    state = sweep.run_to_step(waved, state, 0, cfg.train.eval_steps(),
                              lambda s, _, m: rows.extend(sweep.metric_rows(waved, s, m)))
    import pandas as pd

    df = pd.DataFrame(rows)
    cols = list(train.METRIC_NAMES)
    np.testing.assert_allclose(df[cols].to_numpy(), ref_df[cols].to_numpy(), rtol=2e-5,
                               atol=2e-6)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)


def test_a_grid_too_large_for_the_device_is_refused_before_training(tiny_cfg):
    ds = dataset_for(tiny_cfg)
    with pytest.raises(ConfigError, match="does not fit in device memory"):
        sweep.build_engine(tiny_cfg, ds, memory_limit=10_000)

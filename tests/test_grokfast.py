"""Grokfast (Lee et al. 2024): the EMA and windowed-mean gradient filters as the first optax
transformation of the chain, lambda and alpha as per-run grid axes, resumed from checkpoints."""

import collections
import dataclasses
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest
from conftest import ROOT, dataset_for

from jgrok import checkpoint, rundir, sweep
from jgrok.config import ExperimentConfig, OptimConfig, SweepConfig
from jgrok.errors import ConfigError
from jgrok.optim import grokfast_ema, grokfast_ma, lr_multiplier, make_optimizer

PARAMS = {"w": jnp.zeros((3, 4), jnp.float32), "b": jnp.zeros((4,), jnp.float32)}


def _grads(n, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return [{k: (rng.normal(size=v.shape) * scale).astype(np.float32) for k, v in PARAMS.items()}
            for _ in range(n)]


def _bits(x):
    return np.asarray(x, np.float32).view(np.uint32)


def _with(cfg, grokfast, window=3, **sweep_kw):
    return dataclasses.replace(
        cfg, optim=dataclasses.replace(cfg.optim, grokfast=grokfast, grokfast_window=window),
        sweep=dataclasses.replace(cfg.sweep, **sweep_kw))


def test_without_a_filter_the_chain_and_its_state_are_as_before():
    """grokfast='none' (the default) is the optimizer of before Grokfast: the same state
    layout (so older checkpoints load) and the same updates, bit for bit, as the chain written
    out here."""
    cfg = OptimConfig()
    sched = lr_multiplier(cfg, 100)

    def before(learning_rate, weight_decay):
        return optax.chain(optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps),
                           optax.add_decayed_weights(weight_decay),
                           optax.scale_by_schedule(sched), optax.scale(-1.0 * learning_rate))

    ref = optax.inject_hyperparams(before)(learning_rate=1e-3, weight_decay=1.0)
    tx = make_optimizer(cfg, 100)
    params = jax.tree.map(lambda g: jnp.asarray(g) * 0.5 + 1.0, _grads(1, seed=9)[0])
    s_ref, s_tx = ref.init(params), tx.init(params)
    assert jax.tree.structure(s_ref) == jax.tree.structure(s_tx)
    step_ref, step_tx = jax.jit(ref.update), jax.jit(tx.update)
    for g in _grads(12, seed=1):
        u_ref, s_ref = step_ref(g, s_ref, params)
        u_tx, s_tx = step_tx(g, s_tx, params)
        for a, b in zip(jax.tree.leaves((u_ref, s_ref)), jax.tree.leaves((u_tx, s_tx))):
            np.testing.assert_array_equal(np.atleast_1d(a).view(np.uint8),
                                          np.atleast_1d(b).view(np.uint8))
    # with a filter, its state is the chain's first part and lamb/alpha are hyperparameters
    st = make_optimizer(OptimConfig(grokfast="ema"), 100).init(params)
    assert set(st.hyperparams) == {"learning_rate", "weight_decay", "grokfast_lamb",
                                   "grokfast_alpha"}
    assert type(st.inner_state[0]).__name__ == "GrokfastEmaState"
    assert set(make_optimizer(OptimConfig(grokfast="ma"), 100).init(params).hyperparams) == {
        "learning_rate", "weight_decay", "grokfast_lamb"}


@pytest.mark.parametrize("make", [lambda lamb: grokfast_ema(lamb, 0.9),
                                  lambda lamb: grokfast_ma(lamb, 3, warmup=True),
                                  lambda lamb: grokfast_ma(lamb, 3, warmup=False)],
                         ids=["ema", "ma", "ma-nowarmup"])
def test_lambda_0_hands_the_gradients_through_bit_for_bit(make):
    """With lamb = 0 (a traced value, as in a sweep) the filter returns the gradients it was
    given, bit for bit, negative zeros included, before and after the window fills; lamb = 2
    does not."""
    grads = _grads(7, seed=2)
    grads[4]["b"][:2] = [-0.0, 0.0]

    @jax.jit
    def run(lamb):
        tx = make(lamb)
        st, outs = tx.init(PARAMS), []
        for g in grads:
            u, st = tx.update(g, st)
            outs.append(u)
        return outs

    for g, u in zip(grads, run(jnp.float32(0.0))):
        for k in g:
            np.testing.assert_array_equal(_bits(u[k]), _bits(g[k]))
    changed = [not np.array_equal(u["w"], g["w"]) for g, u in zip(grads, run(jnp.float32(2.0)))]
    assert any(changed)


def test_ema_filter_matches_the_hand_computed_sequence():
    """ema_1 = alpha g_1 + (1 - alpha) g_1 (the paper's code starts the average at the first
    gradient), ema_t = alpha ema_{t-1} + (1 - alpha) g_t; the update is g_t + lamb ema_t."""
    lamb, alpha = 2.0, 0.9
    tx = grokfast_ema(jnp.float32(lamb), jnp.float32(alpha))
    st = tx.init(PARAMS)
    step = jax.jit(tx.update)
    a = np.float32(alpha)
    ema = None
    for t, g in enumerate(_grads(6, seed=3)):
        u, st = step(g, st)
        ema = {k: (g[k] if ema is None else ema[k]) * a + g[k] * (np.float32(1) - a) for k in g}
        assert int(st.count) == t + 1
        for k in g:
            np.testing.assert_allclose(st.ema[k], ema[k], rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(u[k], g[k] + np.float32(lamb) * ema[k], rtol=1e-6,
                                       atol=1e-6)
    # a known value: three constant gradients 1.0 keep ema at 1, the update at 1 + lamb
    st = tx.init({"x": jnp.zeros(())})
    for g in (1.0, 1.0, 1.0):
        u, st = tx.update({"x": jnp.float32(g)}, st)
    np.testing.assert_allclose(u["x"], 3.0, rtol=1e-6)
    u, st = tx.update({"x": jnp.float32(0.0)}, st)  # ema 0.9, update 0 + 2 * 0.9
    np.testing.assert_allclose((st.ema["x"], u["x"]), (0.9, 1.8), rtol=1e-6)


@pytest.mark.parametrize("warmup", [True, False])
def test_ma_filter_matches_the_hand_computed_sequence(warmup):
    """The last `window` gradients, the current one included (the paper's deque); the update is
    g + lamb * their mean, with warmup only once the window is full."""
    lamb, window = 5.0, 3
    tx = grokfast_ma(jnp.float32(lamb), window, warmup)
    st = tx.init(PARAMS)
    step = jax.jit(tx.update)
    kept = collections.deque(maxlen=window)
    for t, g in enumerate(_grads(8, seed=4)):
        u, st = step(g, st)
        kept.append(g)
        for k in g:
            # the ring buffer holds exactly the kept gradients (in slot order)
            held = np.asarray(st.window[k])
            assert sorted(map(bytes, held[: len(kept)])) == sorted(bytes(x[k]) for x in kept)
            assert not held[len(kept):].any()
            mean = np.mean([x[k] for x in kept], axis=0, dtype=np.float64)
            on = len(kept) == window or not warmup
            want = g[k] + lamb * mean if on else g[k]
            np.testing.assert_allclose(u[k], want, rtol=1e-6, atol=1e-6)
    # a known value: gradients 1, 2, 3, 4 with window 3: the last update is 4 + 5 * 3
    st = tx.init({"x": jnp.zeros(())})
    for g in (1.0, 2.0, 3.0, 4.0):
        u, st = tx.update({"x": jnp.float32(g)}, st)
    np.testing.assert_allclose(u["x"], 19.0, rtol=1e-6)


@pytest.mark.parametrize("grokfast", ["ema", "ma"])
def test_lambda_0_trains_as_the_unfiltered_optimizer(tiny_cfg, grokfast):
    """A sweep with the filter at lamb = 0 trains as one without it: the filter returns the
    gradients bit for bit (test above), and the step computes the same numbers; XLA:CPU
    contracts multiply-adds into FMAs differently in the larger compiled step, so the weights
    agree to float32 rounding, within 1e-7 in 30 steps (measured 6e-8), not bit for bit; lamb
    = 2 moves them by ~1e-4 and more."""
    ds = dataset_for(tiny_cfg)
    df0, s0 = sweep.train_sweep(tiny_cfg, ds)
    df1, s1 = sweep.train_sweep(_with(tiny_cfg, grokfast), ds)
    df2, s2 = sweep.train_sweep(_with(tiny_cfg, grokfast, grokfast_lambdas=(2.0,)), ds)
    metrics = ["train_loss", "train_acc", "val_loss", "val_acc", "param_norm"]
    np.testing.assert_allclose(df1[metrics].to_numpy(), df0[metrics].to_numpy(), rtol=1e-6,
                               atol=1e-6)
    assert (df1.grokfast_lamb == 0).all()
    far = 0.0
    for a, b, c in zip(*(jax.tree.leaves(s.params) for s in (s1, s0, s2))):
        np.testing.assert_allclose(a, b, rtol=0, atol=3e-7)
        far = max(far, float(np.abs(c - b).max()))
    assert far > 1e-4


@pytest.mark.parametrize("grokfast,wave", [("ema", 0), ("ma", 1)])
def test_a_vmapped_sweep_over_lambdas_equals_each_run_alone(tiny_cfg, grokfast, wave):
    """lamb (and the EMA's alpha) are per-run values of one compiled computation: a grid of
    fractions x seeds x lambda (x alpha) trains each run as it trains alone."""
    kw = dict(grokfast_lambdas=(0.0, 2.0))
    if grokfast == "ema":
        kw["grokfast_alphas"] = (0.8, 0.98)
    cfg = _with(tiny_cfg, grokfast, **kw)
    ds = dataset_for(cfg)
    df, state = sweep.train_sweep(cfg, ds, wave=wave)
    grid = cfg.grid()
    assert len(grid) == cfg.sweep.n_runs() == 8 * (2 if grokfast == "ema" else 1)
    last = df[df.step == cfg.train.steps]
    on = last[last.grokfast_lamb > 0]
    assert on.train_loss.nunique() == len(on)  # every filtered run differs
    if grokfast == "ema":  # at lamb = 0 alpha does nothing: the runs are equal, bit for bit
        off = last[last.grokfast_lamb == 0]
        keys = ["seed", "fraction"]
        a, b = (off[off.grokfast_alpha == x].sort_values(keys) for x in (0.8, 0.98))
        np.testing.assert_array_equal(a.train_loss.to_numpy(), b.train_loss.to_numpy())
        assert off.train_loss.nunique() == len(off) // 2
    for i in (0, len(grid) - 1, len(grid) // 2 + 1):
        g = grid[i]
        one = dataclasses.replace(cfg, sweep=SweepConfig(
            seeds=(g["seed"],), fractions=(g["fraction"],), weight_decays=(g["weight_decay"],),
            lrs=(g["lr"],), grokfast_lambdas=(g["grokfast_lamb"],),
            grokfast_alphas=(g.get("grokfast_alpha", 0.98),)))
        df1, s1 = sweep.train_sweep(one, ds, wave=wave)
        mine = df[df.run == i].reset_index(drop=True)
        cols = ["train_loss", "train_acc", "val_loss", "val_acc", "param_norm"]
        np.testing.assert_allclose(mine[cols].to_numpy(), df1[cols].to_numpy(), rtol=2e-5,
                                   atol=2e-6)
        assert df1.grokfast_lamb.iloc[0] == g["grokfast_lamb"]
        for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(s1)):
            np.testing.assert_allclose(np.asarray(a)[i], np.asarray(b)[0], rtol=2e-5, atol=2e-6)


class Killed(Exception):
    pass


@pytest.mark.parametrize("grokfast", ["ema", "ma"])
def test_kill_and_resume_with_the_filter_equals_uninterrupted_exactly(tiny_cfg, tmp_path,
                                                                       grokfast):
    """The filter's state is part of the optimizer state, so the checkpoint carries it: a sweep
    killed after its checkpoint at step 10 and resumed has the uninterrupted sweep's table and
    state bit for bit (a filter restarted at the checkpoint would not: lamb = 2, and the MA's
    window of 4 would be refilling)."""
    cfg = _with(tiny_cfg, grokfast, window=4, grokfast_lambdas=(2.0,))
    ds = dataset_for(cfg)
    full = rundir.run_sweep(cfg, ds, tmp_path / "full", log=lambda m: None)

    def kill(step, state, m):
        if step == 20:
            raise Killed()

    with pytest.raises(Killed):
        rundir.run_sweep(cfg, ds, tmp_path / "cut", on_eval=kill, log=lambda m: None)
    assert checkpoint.Checkpoints(tmp_path / "cut").steps() == [10]
    _, raw = checkpoint.load_raw(tmp_path / "cut")
    filt = jax.tree.leaves(raw["opt_state"]["inner_state"][0])
    assert any(np.abs(x).sum() > 0 for x in filt if np.asarray(x).dtype == np.float32)
    msgs = []
    resumed = rundir.run_sweep(cfg, ds, tmp_path / "cut", resume=True, log=msgs.append)
    assert any("resumed from the checkpoint at step 10" in m for m in msgs)
    pd.testing.assert_frame_equal(full, resumed, check_exact=True)
    assert "grokfast_lamb" in resumed.columns
    _, a = checkpoint.load_raw(tmp_path / "full")
    _, b = checkpoint.load_raw(tmp_path / "cut")
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)


def test_grid_columns_settings_and_refusals(tiny_cfg):
    """Without a filter the grid (and metrics.csv) has the columns it always had; with one,
    grokfast_lamb (and for the EMA grokfast_alpha) after init_scale. Values a filter would not
    use are refused."""
    base = ["seed", "split_seed", "fraction", "weight_decay", "lr", "init_scale"]
    assert list(tiny_cfg.grid()[0]) == base
    assert tiny_cfg.grid() == tiny_cfg.sweep.grid()
    assert list(_with(tiny_cfg, "ema").grid()[0]) == base + ["grokfast_lamb", "grokfast_alpha"]
    assert list(_with(tiny_cfg, "ma").grid()[0]) == base + ["grokfast_lamb"]
    # the order: the old axes as before, lambda then alpha, seeds fastest
    g = _with(tiny_cfg, "ema", grokfast_lambdas=(0.0, 1.0), grokfast_alphas=(0.5, 0.9)).grid()
    assert [(r["grokfast_lamb"], r["grokfast_alpha"], r["seed"]) for r in g[:8]] == [
        (0.0, 0.5, 0), (0.0, 0.5, 1), (0.0, 0.9, 0), (0.0, 0.9, 1), (1.0, 0.5, 0),
        (1.0, 0.5, 1), (1.0, 0.9, 0), (1.0, 0.9, 1)]
    with pytest.raises(ConfigError, match="grokfast_lambdas=.* is not used by grokfast='none'"):
        dataclasses.replace(tiny_cfg, sweep=dataclasses.replace(
            tiny_cfg.sweep, grokfast_lambdas=(2.0,))).validate()
    with pytest.raises(ConfigError, match="grokfast_alphas=.* is not used by grokfast='ma'"):
        _with(tiny_cfg, "ma", grokfast_alphas=(0.5,)).validate()
    with pytest.raises(ConfigError, match="unknown grokfast filter"):
        OptimConfig(grokfast="kalman").validate()
    with pytest.raises(ConfigError, match="grokfast alpha 1.0"):
        SweepConfig(grokfast_alphas=(1.0,)).validate()
    with pytest.raises(ConfigError, match="grokfast lambda -1"):
        SweepConfig(grokfast_lambdas=(-1.0,)).validate()
    # config.json round trip (lists back to tuples); old directories load with the defaults
    cfg = _with(tiny_cfg, "ema", grokfast_lambdas=(0.0, 2.0))
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg
    old = tiny_cfg.to_dict()
    for k in ("grokfast_lambdas", "grokfast_alphas"):
        del old["sweep"][k]
    for k in ("grokfast", "grokfast_window", "grokfast_warmup"):
        del old["optim"][k]
    for k in ("dropout", "weight_noise"):
        del old["model"][k]
    assert ExperimentConfig.from_dict(old) == tiny_cfg


def test_flags_set_the_filter_and_its_axes():
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    import common_flags

    try:
        common_flags.FLAGS.unparse_flags()
        common_flags.FLAGS(["prog", "--grokfast=ma", "--grokfast_window=50",
                            "--grokfast_lambdas=0,2,5", "--dropout=0.1", "--weight_noise=0.01"])
        cfg = common_flags.config_from_flags()
    finally:
        common_flags.FLAGS.unparse_flags()
        sys.path.remove(os.path.join(ROOT, "experiments"))
    assert (cfg.optim.grokfast, cfg.optim.grokfast_window) == ("ma", 50)
    assert cfg.sweep.grokfast_lambdas == (0.0, 2.0, 5.0)
    assert (cfg.model.dropout, cfg.model.weight_noise) == (0.1, 0.01)
    assert cfg.sweep.n_runs() == len(cfg.grid()) == 3 * len(cfg.sweep.fractions)

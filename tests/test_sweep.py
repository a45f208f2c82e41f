"""The sweep engine: vmapped runs equal runs done one at a time, sampling and splits behave,
gradients are right, a small configuration really groks."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_same_training, dataset_for, short_training_cfg

from jgrok import sweep, train
from jgrok.config import (ExperimentConfig, ModelConfig, OptimConfig, SweepConfig, TaskConfig,
                          TrainConfig)
from jgrok.data.split import paper_batch_size, split_run
from jgrok.errors import ConfigError

METRICS = list(train.METRIC_NAMES)


def _one_run(cfg, g):
    sw = SweepConfig(seeds=(g["seed"],), split_seeds=(g["split_seed"],),
                     fractions=(g["fraction"],), weight_decays=(g["weight_decay"],),
                     lrs=(g["lr"],))
    return sweep.train_sweep(dataclasses.replace(cfg, sweep=sw), dataset_for(cfg))


# wave 0: one vmap over all runs (the GPU/TPU default); 1: runs mapped one after another
# inside the jitted call (the CPU default); 3: vmapped waves of 3 runs (32 is not a multiple)
@pytest.mark.parametrize("kind,checked,wave", [("transformer", [0, 13, 31], 0),
                                                    ("transformer", [13], 1),
                                                    ("mlp", [6, 25], 0), ("mlp", [6, 31], 3)])
def test_vmapped_runs_equal_runs_one_at_a_time(tiny_cfg, kind, checked, wave):
    cfg = dataclasses.replace(
        tiny_cfg, model=dataclasses.replace(tiny_cfg.model, kind=kind, mlp_width=32),
        sweep=SweepConfig(seeds=(0, 1), split_seeds=(3, 4), fractions=(0.4, 0.7),
                          weight_decays=(0.0, 1.0), lrs=(1e-3, 3e-3)))
    df, state = sweep.train_sweep(cfg, dataset_for(cfg), wave=wave)
    grid = cfg.sweep.grid()
    assert len(grid) == 32 and df.run.nunique() == 32
    assert df[df.step == cfg.train.steps].train_loss.nunique() == 32  # every run differs
    assert set(df.step.unique()) == {0, 10, 20, 30}
    for i in checked:
        one, one_state = _one_run(cfg, grid[i])
        mine = df[df.run == i].reset_index(drop=True)
        np.testing.assert_allclose(mine[METRICS].to_numpy(), one[METRICS].to_numpy(),
                                   rtol=2e-5, atol=2e-6)
        for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(one_state.params)):
            np.testing.assert_allclose(np.asarray(a)[i], np.asarray(b)[0], rtol=2e-5,
                                       atol=2e-6)


def test_split_sizes_disjoint_deterministic_and_independent_of_init_seed(tiny_cfg):
    ds = dataset_for(tiny_cfg)
    a = split_run(ds, 0.4, split_seed=5)
    b = split_run(ds, 0.4, split_seed=5)
    c = split_run(ds, 0.4, split_seed=6)
    assert a["train_mask"].sum() == round(0.4 * 49) == a["n_train"]
    assert not (a["train_mask"] & a["val_mask"]).any()
    assert (a["train_mask"] | a["val_mask"]).all()
    np.testing.assert_array_equal(a["train_mask"], b["train_mask"])
    assert (a["train_mask"] != c["train_mask"]).any()


def test_impossible_fractions_are_refused(tiny_cfg):
    ds = dataset_for(tiny_cfg)
    with pytest.raises(ConfigError, match="empty training set"):
        split_run(ds, 0.001, 0)
    with pytest.raises(ConfigError, match="empty validation set"):
        split_run(ds, 0.999, 0)
    with pytest.raises(ConfigError, match="outside"):
        SweepConfig(fractions=(1.5,)).validate()


def test_label_noise_replaces_the_requested_share_of_training_answers(tiny_cfg):
    ds = dataset_for(dataclasses.replace(tiny_cfg, task=TaskConfig(op="add", p=31)))
    s = split_run(ds, 0.5, 0, label_noise=0.2)
    changed = s["labels"] != ds.targets
    assert changed.sum() == round(0.2 * s["n_train"])
    assert not (changed & s["val_mask"]).any()
    assert (s["labels"] < 31).all()


def test_paper_batch_size_rule():
    assert paper_batch_size(100, None) == 50
    assert paper_batch_size(5000, None) == 512
    assert paper_batch_size(101, None) == 51
    assert paper_batch_size(77, "full") == 77
    assert paper_batch_size(77, 128) == 77


def test_batches_are_drawn_without_replacement_from_training_rows_only():
    n = 50
    mask = np.zeros(n, bool)
    mask[np.random.default_rng(0).choice(n, 20, replace=False)] = True
    data = train.RunData(train_mask=jnp.asarray(mask), val_mask=jnp.asarray(~mask),
                         labels=jnp.zeros(n, jnp.int32), batch_size=jnp.int32(10),
                         n_train=jnp.int32(20))
    seen = set()
    for k in range(20):
        idx, w = train.sample_batch(jax.random.PRNGKey(k), data, 16)
        idx, w = np.asarray(idx), np.asarray(w)
        first = idx[:10]
        assert len(set(first)) == 10 and mask[first].all()
        np.testing.assert_allclose(w[:10], 0.1)
        assert (w[10:] == 0).all()
        seen |= set(first.tolist())
    assert seen == set(np.flatnonzero(mask).tolist())


def test_gradient_matches_finite_differences():
    from jgrok.models import build_model

    with jax.enable_x64(True):
        model = build_model(ModelConfig(kind="transformer", n_layers=1, d_model=8, n_heads=2),
                            vocab_size=9)
        x = jnp.array([[1, 7, 2, 8], [3, 7, 4, 8]])
        y = jnp.array([3, 0])
        params = jax.tree.map(lambda a: a.astype(jnp.float64),
                              model.init(jax.random.PRNGKey(0), x)["params"])

        def loss(p):
            logits = model.apply({"params": p}, x)
            return jnp.mean(train.per_example_loss(logits, y, "ce", 9))

        g = jax.grad(loss)(params)
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        gflat = jax.flatten_util.ravel_pytree(g)[0]
        rng = np.random.default_rng(0)
        for _ in range(5):
            d = rng.standard_normal(flat.shape)
            d /= np.linalg.norm(d)
            h = 1e-5
            fd = (loss(unravel(flat + h * d)) - loss(unravel(flat - h * d))) / (2 * h)
            np.testing.assert_allclose(float(fd), float(gflat @ d), rtol=1e-5, atol=1e-9)


def test_adamw_step_matches_the_textbook_update():
    from jgrok.optim import make_optimizer

    cfg = OptimConfig(warmup_steps=0)
    tx = make_optimizer(cfg, 100, learning_rate=0.01, weight_decay=0.5)
    p = {"w": jnp.array([1.0, -3.0])}
    g = {"w": jnp.array([0.3, 0.1])}
    st = tx.init(p)
    upd, st = tx.update(g, st, p)
    m = 0.1 * g["w"] / (1 - 0.9)
    v = 0.02 * g["w"] ** 2 / (1 - 0.98)
    expected = -0.01 * (m / (jnp.sqrt(v) + 1e-8) + 0.5 * p["w"])
    np.testing.assert_allclose(upd["w"], expected, rtol=1e-6, atol=1e-7)


def test_a_small_configuration_groks_and_a_tiny_fraction_only_memorizes():
    """One-hot quadratic MLP on addition mod 23, full batch, AdamW lr 3e-3, wd 1: at 60% data
    the training set is fit long before validation accuracy reaches 0.95; at 20% it never
    generalizes within the budget."""
    cfg = ExperimentConfig(
        task=TaskConfig(op="add", p=23),
        model=ModelConfig(kind="mlp", mlp_input="onehot", mlp_activation="quadratic",
                          mlp_width=128, mlp_depth=1),
        train=TrainConfig(steps=2500, batch_size="full", eval_every=25),
        sweep=SweepConfig(seeds=(0, 1), fractions=(0.2, 0.6), lrs=(3e-3,)))
    df, _ = sweep.train_sweep(cfg, dataset_for(cfg))
    for run, r in df.groupby("run"):
        r = r.sort_values("step")
        fit = r.step[r.train_acc >= 1.0].min()
        gen = r.step[r.val_acc >= 0.95].min()
        frac = r.fraction.iloc[0]
        assert fit <= 300, (run, fit)
        if frac == 0.6:
            assert gen >= 4 * fit, (run, fit, gen)  # the grokking delay
            assert r.val_acc.iloc[-1] >= 0.95
            # a plateau: validation accuracy still low well after the fit
            assert r[r.step == 2 * fit].val_acc.iloc[0] < 0.5
        else:
            assert np.isnan(gen) and r.val_acc.max() < 0.2, (run, r.val_acc.max())


def _ynn_reductions(engine) -> int:
    """Fusions of the compiled advance that YNNPACK runs and whose result is a reduction."""
    state = sweep.init_state(engine)
    text = engine.advance.lower(engine.inputs, state, engine.run_data,
                                jnp.int32(1)).compile().as_text()
    bodies = dict(re.findall(r"^%(\S+) \([^\n]*\{\n(.*?)\n\}", text, re.S | re.M))
    called = re.findall(r"fusion\([^\n]*calls=%([\w.]+)[^\n]*__ynn_fusion", text)
    return sum(" reduce(" in bodies[c].split("ROOT", 1)[1] for c in called)


@pytest.mark.skipif(not sweep.cpu_compiler_options(),
                    reason="this jaxlib's XLA:CPU has no such option")
def test_cpu_compiler_options_take_effect_and_change_only_float_rounding():
    """On CPU the engine keeps XLA's YNNPACK back-end to dots (`CPU_COMPILER_OPTIONS`): the
    compiled step has none of its reductions (XLA's default has some), and 40 steps of a 2-layer
    transformer (LayerNorm and dense layers, whose gradients are such reductions) match XLA's
    default compilation to float32 rounding (measured: metrics within 2e-6, parameters within
    5e-6; the MLP, checked the same way once: 1e-6 and 5e-8)."""
    cfg = short_training_cfg("transformer")
    ds = dataset_for(cfg)
    found = {}
    for default in (False, True):  # (): the engine compiled with XLA:CPU's own defaults
        xla_options = () if default else None
        found[default] = (_ynn_reductions(sweep.build_engine(cfg, ds, xla_options=xla_options)),
                          sweep.train_sweep(cfg, ds, xla_options=xla_options))
    assert found[False][0] == 0 < found[True][0]  # what the option takes away
    assert_same_training(found[False][1], found[True][1])

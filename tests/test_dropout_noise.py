"""openai/grok's regularizers: dropout on the transformer blocks' feed-forward output and
Gaussian weight noise, in training steps only, drawn from the run's key; off by default."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import dataset_for

from jgrok import sweep, train
from jgrok.config import ModelConfig, SweepConfig
from jgrok.errors import ConfigError
from jgrok.models import build_model
from jgrok.models.transformer import Transformer


def _model(tiny_cfg, **kw):
    return dataclasses.replace(tiny_cfg, model=dataclasses.replace(tiny_cfg.model, **kw))


def test_dropout_zeroes_the_feed_forward_output_at_the_rate_and_scales_the_rest():
    """Nanda's LayerNorm-free block: out = h + Dropout(FFN(h)), h = x + Attn(x). Against the
    same call without dropout, out_train - out_eval = (mask / (1 - rate) - 1) * FFN(h), so
    the ratio (out_train - out_eval) / FFN(h) + 1 is 0 on the dropped values and 1/(1 - rate)
    on the others; dropped: 30% of 64 x 4 x 32 values, within 4 binomial sigmas."""
    rate = 0.3
    model = Transformer(vocab_size=11, n_layers=1, d_model=32, n_heads=4, d_ff=64,
                        layer_norm=False, positions="learned", shortcuts=False, dropout=rate)
    x = jax.random.randint(jax.random.PRNGKey(0), (64, 4), 0, 11)
    params = model.init(jax.random.PRNGKey(1), x)["params"]

    def block(train, rngs=None):
        _, inter = model.apply({"params": params}, x, train=train, rngs=rngs,
                               capture_intermediates=True, mutable=["intermediates"])
        b = inter["intermediates"]["block_0"]
        return np.asarray(b["__call__"][0], np.float64), np.asarray(b["ffn_out"]["__call__"][0])

    out_eval, f = block(False)
    out_train, f_train = block(True, dict(dropout=jax.random.PRNGKey(2)))
    np.testing.assert_array_equal(f, f_train)  # the same FFN output before the dropout
    ratio = (out_train - out_eval) / f + 1
    dropped = np.abs(ratio) < 1e-3
    np.testing.assert_allclose(ratio[~dropped], 1 / (1 - rate), rtol=2e-3)
    n = ratio.size
    assert abs(dropped.sum() - rate * n) < 4 * np.sqrt(n * rate * (1 - rate))
    # another key, other values dropped; no key needed in evaluation
    other, _ = block(True, dict(dropout=jax.random.PRNGKey(3)))
    assert not np.array_equal(other, out_train)
    np.testing.assert_array_equal(block(False)[0], out_eval)


@pytest.mark.parametrize("n_layers", [1, 2])
def test_dropout_drops_the_same_values_with_and_without_shortcuts(n_layers):
    """The masks are drawn for every position whichever computation runs, so the shortcuts
    (the last block at the last position only) and the plain computation agree under dropout
    to float32 rounding, as they do without it."""
    kw = dict(vocab_size=11, n_layers=n_layers, d_model=32, n_heads=4, d_ff=64, dropout=0.2)
    fast, plain = Transformer(**kw), Transformer(**kw, shortcuts=False)
    x = jax.random.randint(jax.random.PRNGKey(0), (64, 4), 0, 11)
    params = plain.init(jax.random.PRNGKey(1), x)["params"]
    rngs = dict(dropout=jax.random.PRNGKey(5))
    want = plain.apply({"params": params}, x, train=True, rngs=rngs)
    got = fast.apply({"params": params}, x, train=True, rngs=rngs)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    no_drop = plain.apply({"params": params}, x)
    assert np.abs(np.asarray(want) - np.asarray(no_drop)).max() > 1e-2


def _one_step_problem(dropout=0.0, weight_noise=0.0):
    """A transformer Problem and a run on add mod 7 whose batch is its whole training set."""
    from jgrok.config import ExperimentConfig, OptimConfig, TaskConfig
    from jgrok.data.split import split_run
    from jgrok.optim import make_optimizer

    cfg = ExperimentConfig(task=TaskConfig(op="add", p=7))
    ds = dataset_for(cfg)
    model = build_model(ModelConfig(n_layers=1, d_model=16, n_heads=2, dropout=dropout),
                        ds.n_classes)
    run = split_run(ds, 0.5, 0, 0.0, "full")
    n = int(run["n_train"])
    # SGD: the step is -lr * gradient, so rounding stays rounding (Adam's first step is about
    # lr * sign(gradient), where a rounding of a gradient near 0 can flip a whole lr)
    tx = make_optimizer(OptimConfig(name="sgd", warmup_steps=0), 10)
    problem = train.Problem(model=model, tx=tx,
                            loss="ce", n_classes=ds.n_classes, max_batch=n, eval_rows=64,
                            dropout=dropout, weight_noise=weight_noise)
    data = train.RunData(**{k: jnp.asarray(v) for k, v in run.items()})
    inputs = jnp.asarray(ds.inputs)
    state = train.init_run(problem, inputs[:1], 0, 0, jnp.float32(0.1), jnp.float32(0.0),
                           jnp.float32(1.0))
    return problem, inputs, jnp.asarray(ds.targets), data, state


@pytest.mark.parametrize("setting", [dict(dropout=0.2), dict(weight_noise=0.05)])
def test_a_steps_noise_comes_from_the_runs_key(setting):
    """One full-batch step from the same weights with two run keys: without noise the keys
    only reorder the batch (float rounding, < 1e-6); with dropout or weight noise they draw
    other noise (the weights move apart by > 1e-4); the same key gives the same step bit for
    bit."""
    def step(problem, state, data, inputs, seed):
        s = state.replace(key=jax.random.PRNGKey(seed))
        return jax.jit(lambda s: train.unguarded_step(problem, inputs, s, data))(s)

    def spread(problem, inputs, _, data, state):
        a, la = step(problem, state, data, inputs, 1)
        b, lb = step(problem, state, data, inputs, 2)
        c, lc = step(problem, state, data, inputs, 1)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(c)):
            np.testing.assert_array_equal(x, y)
        assert la == lc
        return max(float(np.abs(x - y).max())
                   for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)))

    quiet, noisy = spread(*_one_step_problem()), spread(*_one_step_problem(**setting))
    print(f"{setting}: weights apart by {quiet:.2e} without noise, {noisy:.2e} with")
    assert quiet < 1e-6 and noisy > 1e-4


@pytest.mark.parametrize("setting", [dict(dropout=0.2), dict(weight_noise=0.05)])
def test_evaluation_is_deterministic_and_noise_free(setting):
    """`evaluate` (and `model_output` without a training key) computes the clean model: the
    same numbers, bit for bit, as a problem without dropout or noise, call after call."""
    problem, inputs, targets, data, state = _one_step_problem(**setting)
    clean = _one_step_problem()[0]
    got = jax.jit(lambda p: train.evaluate(problem, inputs, targets, p, data))(state.params)
    again = jax.jit(lambda p: train.evaluate(problem, inputs, targets, p, data))(state.params)
    want = jax.jit(lambda p: train.evaluate(clean, inputs, targets, p, data))(state.params)
    for k in want:
        assert float(got[k]) == float(want[k]) == float(again[k]), k
    np.testing.assert_array_equal(train.model_output(problem, state.params, inputs[:5]),
                                  train.model_output(clean, state.params, inputs[:5]))


def test_weight_noise_is_gaussian_on_every_parameter_with_the_given_std():
    params = {"a": jnp.zeros((300, 200)), "b": {"c": jnp.ones((50_000,))}}
    noisy = train.add_weight_noise(params, jax.random.PRNGKey(0), 0.1)
    a, c = np.asarray(noisy["a"]), np.asarray(noisy["b"]["c"]) - 1
    for x in (a, c):
        assert abs(x.mean()) < 4 * 0.1 / np.sqrt(x.size)
        assert abs(x.std() / 0.1 - 1) < 0.02
    assert abs(np.corrcoef(a.ravel()[:50_000], c)[0, 1]) < 0.03  # independent leaves
    other = train.add_weight_noise(params, jax.random.PRNGKey(1), 0.1)
    assert not np.array_equal(other["a"], noisy["a"])


@pytest.mark.parametrize("setting", [dict(dropout=0.1), dict(weight_noise=0.01)])
def test_a_sweep_with_noise_trains_each_run_with_its_own_draws(tiny_cfg, setting):
    """A vmapped grid with dropout or weight noise trains each run as that run alone (its
    noise is its own, not shared across the run axis), and differs from the grid without."""
    cfg = _model(tiny_cfg, **setting)
    ds = dataset_for(cfg)
    df0, s0 = sweep.train_sweep(tiny_cfg, ds, wave=0)
    df, state = sweep.train_sweep(cfg, ds, wave=0)
    cols = ["train_loss", "val_loss", "param_norm"]
    assert np.abs(df[cols].to_numpy() - df0[cols].to_numpy()).max() > 1e-4
    grid = cfg.grid()
    for i in (1, 2):
        g = grid[i]
        one = dataclasses.replace(cfg, sweep=SweepConfig(
            seeds=(g["seed"],), fractions=(g["fraction"],), weight_decays=(g["weight_decay"],),
            lrs=(g["lr"],)))
        df1, s1 = sweep.train_sweep(one, ds, wave=0)
        np.testing.assert_allclose(df[df.run == i][cols].to_numpy(), df1[cols].to_numpy(),
                                   rtol=2e-5, atol=2e-6)
        for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(s1.params)):
            np.testing.assert_allclose(np.asarray(a)[i], np.asarray(b)[0], rtol=2e-5,
                                       atol=2e-6)


def test_off_by_default_and_bad_settings_are_refused():
    m = ModelConfig()
    assert (m.dropout, m.weight_noise) == (0.0, 0.0)
    with pytest.raises(ConfigError, match="dropout is implemented for the transformer only"):
        ModelConfig(kind="mlp", dropout=0.1).validate()
    with pytest.raises(ConfigError, match=r"dropout=1.0 must be in \[0, 1\)"):
        ModelConfig(dropout=1.0).validate()
    with pytest.raises(ConfigError, match="weight_noise=-0.1"):
        ModelConfig(weight_noise=-0.1).validate()
    ModelConfig(kind="mlp", weight_noise=0.1).validate()  # weight noise: any model

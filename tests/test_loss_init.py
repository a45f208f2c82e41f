"""The high-precision cross-entropy (`TrainConfig.loss_precision="high"`) against a reference
computed in extended precision, and Nanda et al.'s initialization (`weight_init="nanda"`)
against the paper code's scales."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jgrok import losses, presets, train
from jgrok.config import ModelConfig, TrainConfig
from jgrok.errors import ConfigError
from jgrok.models import build_model

V = 10


def _logits(seed=0, n=300):
    """Logits of three sizes, and a third of the rows with the answer far in the lead (losses
    down to ~1e-18, where float32's logsumexp returns 0)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, V)) * np.repeat([1.0, 10.0, 30.0], n // 3)[:, None]
    y = rng.integers(0, V, n)
    lead = np.arange(n // 3, 2 * n // 3)
    z[lead, y[lead]] += 25.0
    return z.astype(np.float32), y


def _reference(z, y):
    """Loss and gradient in long double, each term computed where it is exact."""
    zl = z.astype(np.longdouble)
    d = zl - zl[np.arange(len(y)), y][:, None]
    others = np.arange(V) != y[:, None]
    top = np.maximum(np.max(np.where(others, d, -np.inf), axis=1), 0)[:, None]
    w = np.where(others, np.exp(d - top), 0)
    s = w.sum(axis=1)
    loss = np.where(top[:, 0] > 0, top[:, 0] + np.log(s + np.exp(-top[:, 0])), np.log1p(s))
    p_other = w / (s + np.exp(-top[:, 0]))[:, None]  # softmax of the other classes
    grad = p_other.copy()
    grad[np.arange(len(y)), y] = -p_other.sum(axis=1)  # -(1 - p_y), without the cancellation
    return loss.astype(np.float64), grad.astype(np.float64)


def test_high_precision_loss_and_gradient_match_extended_precision():
    z, y = _logits()
    ref, gref = _reference(z, y)
    assert ref.min() < 1e-15  # the range float32's logsumexp cannot resolve
    hi = np.asarray(train.per_example_loss(jnp.asarray(z), jnp.asarray(y), "ce", V, "high"),
                    np.float64)
    np.testing.assert_allclose(hi, ref, rtol=1e-5)
    g = np.asarray(jax.grad(lambda q: losses.cross_entropy_high_precision(
        q, jnp.asarray(y)).sum())(jnp.asarray(z)), np.float64)
    keep = np.abs(gref) > 1e-30  # float32's smallest normals
    np.testing.assert_allclose(g[keep], gref[keep], rtol=1e-4)
    # the gradient sums to zero over the logits, as the true one does
    np.testing.assert_allclose(g.sum(axis=1), 0, atol=1e-6)


def test_float32_loss_is_optax_and_rounds_small_losses_to_zero():
    z, y = _logits()
    ref, _ = _reference(z, y)
    lo = np.asarray(train.per_example_loss(jnp.asarray(z), jnp.asarray(y), "ce", V))
    np.testing.assert_array_equal(
        lo, optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(z), jnp.asarray(y)))
    tiny = ref < 1e-9
    assert tiny.sum() > 10 and np.all(lo[tiny] == 0)  # what the high-precision loss is for


def test_high_precision_loss_agrees_with_optax_to_float32s_absolute_resolution():
    """optax's error is absolute (a few ulps of the logits' size); the two agree to it."""
    z, y = _logits(seed=1)
    ref, _ = _reference(z, y)
    hi = np.asarray(losses.cross_entropy_high_precision(jnp.asarray(z), jnp.asarray(y)))
    lo = np.asarray(optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(z),
                                                                     jnp.asarray(y)))
    ulps = 4 * np.finfo(np.float32).eps * np.maximum(1, np.abs(z).max(axis=1))
    assert np.all(np.abs(hi - lo) <= ulps)
    assert np.all(np.abs(hi - ref) <= ulps) and np.all(np.abs(lo - ref) <= ulps)


def test_loss_precision_is_validated():
    with pytest.raises(ConfigError, match="loss_precision"):
        TrainConfig(loss_precision="float64").validate()


def test_nanda_init_scales_follow_the_paper_code():
    """Every weight N(0, 1/d_model), the unembedding N(0, 1/vocab) (Nanda et al.'s
    `randn / sqrt(d_model)` and `randn / sqrt(d_vocab)`); the default keeps Flax's."""
    d, vocab = 128, 115
    cfg = ModelConfig(kind="transformer", n_layers=1, d_model=d, d_ff=512, layer_norm=False,
                      positions="learned", max_len=4, weight_init="nanda")
    params = build_model(cfg, vocab).init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))
    flat = {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
            for path, v in jax.tree_util.tree_leaves_with_path(params["params"])}
    assert len(flat) == 9  # embed, positions, q, k, v, out, ffn in/out, unembed
    for name, w in flat.items():
        want = 1 / np.sqrt(vocab) if name.startswith("unembed") else 1 / np.sqrt(d)
        assert abs(w.std() / want - 1) < 0.05, (name, w.std(), want)
        assert abs(w.mean()) < 0.2 * want and np.abs(w).max() > 3.5 * want  # not truncated
    default = build_model(ModelConfig(kind="transformer", n_layers=1, layer_norm=False,
                                      positions="learned", max_len=4), vocab)
    emb = default.init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"]["embed"]
    emb = np.asarray(emb["embedding"])  # Flax's N(0, 1/d)
    assert abs(emb.std() * np.sqrt(d) - 1) < 0.05


def test_nanda_init_is_for_the_transformer_only():
    with pytest.raises(ConfigError, match="nanda"):
        ModelConfig(kind="mlp", weight_init="nanda").validate()


def test_nanda_preset_is_the_paper_run():
    cfg = presets.get("nanda")
    assert (cfg.task.op, cfg.task.p, cfg.sweep.fractions) == ("add", 113, (0.3,))
    assert cfg.sweep.seeds == (0, 1, 2) and cfg.train.steps == 40_000
    assert (cfg.model.weight_init, cfg.train.loss_precision) == ("nanda", "high")
    assert (cfg.optim.b1, cfg.optim.b2, cfg.sweep.weight_decays, cfg.sweep.lrs) == (
        0.9, 0.98, (1.0,), (1e-3,))
    # the table and a checkpoint are written during the run, not only at its end
    assert cfg.train.checkpoint_every == 1_000 and cfg.train.eval_every == 100


def test_progress_measures_cross_entropy_resolves_losses_below_float32s_resolution():
    from jgrok.analysis import progress

    p = 7
    labels = (np.arange(p)[:, None] + np.arange(p)[None, :]) % p
    logits = np.zeros((p, p, p), np.float32)
    np.put_along_axis(logits, labels[..., None], 30.0, axis=-1)  # loss (p-1) e^-30 per pair
    got = float(progress.cross_entropy_on_pairs(jnp.asarray(logits)))
    np.testing.assert_allclose(got, (p - 1) * np.exp(-30.0), rtol=1e-5)

"""Known-answer tests for jgrok.analysis.progress."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jgrok.analysis import progress as pm


def _planted_embedding(p, freqs, d=32, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    x = np.arange(p)
    W = noise * rng.standard_normal((p, d))
    for k in freqs:
        a, b = rng.standard_normal(d), rng.standard_normal(d)
        W += np.outer(np.cos(2 * np.pi * k * x / p), a) + np.outer(np.sin(2 * np.pi * k * x / p), b)
    return jnp.asarray(W, dtype=jnp.float32)


def _key_logits(p, freqs, amps, phases=None):
    x = np.arange(p)
    t = x[:, None, None] + x[None, :, None] - x[None, None, :]
    L = np.zeros((p, p, p))
    for i, (k, a) in enumerate(zip(freqs, amps)):
        ph = 0.0 if phases is None else phases[i]
        L += a * np.cos(2 * np.pi * k * t / p + ph)
    return jnp.asarray(L, dtype=jnp.float32)


# ---------------------------------------------------------------- Fourier basis


@pytest.mark.parametrize("p", [7, 8, 11, 113])
def test_fourier_basis_orthonormal(p):
    F = np.asarray(pm.fourier_basis(p))
    assert F.shape == (p, p)
    np.testing.assert_allclose(F @ F.T, np.eye(p), atol=1e-5)
    labels = pm.basis_labels(p)
    freqs = pm.frequency_of_row(p)
    assert len(labels) == p and freqs.shape == (p,)
    assert labels[:3] == ["const", "cos 1", "sin 1"]
    assert freqs.max() == p // 2
    if p % 2 == 0:
        assert labels[-1] == f"cos {p // 2}"
        np.testing.assert_allclose(np.abs(F[-1]), 1 / np.sqrt(p), atol=1e-6)


def test_fourier_norms_single_frequency():
    p = 13
    x = np.arange(p)
    v = 3.0 * np.cos(2 * np.pi * 4 * x / p + 0.7)
    n = np.asarray(pm.fourier_norms(jnp.asarray(v[:, None]), axis=0))
    assert n.shape == (p // 2 + 1,)
    np.testing.assert_allclose(n[4], np.linalg.norm(v), rtol=1e-5)
    np.testing.assert_allclose(np.delete(n, 4), 0.0, atol=1e-4)
    # unembedding = transposed path
    np.testing.assert_allclose(
        pm.unembedding_fourier_norms(jnp.asarray(v[None, :])), n, rtol=1e-5, atol=1e-5
    )


# ---------------------------------------------------------------- key frequencies


@pytest.mark.parametrize("p", [31, 113])
def test_key_frequencies_recovered(p):
    planted = [3, 7, 14]
    W = _planted_embedding(p, planted)
    norms = pm.embedding_fourier_norms(W)
    assert norms.shape == (p // 2 + 1,)
    assert list(pm.key_frequencies(norms)) == planted
    assert list(pm.key_frequencies(norms, k=3)) == planted
    mask = jax.jit(pm.key_frequency_mask, static_argnums=1)(norms, 3)
    assert mask.dtype == jnp.bool_ and not bool(mask[0])
    assert list(np.nonzero(np.asarray(mask))[0]) == planted


def test_key_frequencies_noise_only_threshold():
    rng = np.random.default_rng(1)
    W = jnp.asarray(rng.standard_normal((113, 128)), dtype=jnp.float32)
    assert pm.key_frequencies(pm.embedding_fourier_norms(W)).size == 0


# ---------------------------------------------------------------- neurons


def test_neuron_frequency_spectrum_planted():
    p = 23
    x = np.arange(p)
    X, Y = np.meshgrid(x, x, indexing="ij")
    w = lambda k: 2 * np.pi * k / p
    acts = np.stack(
        [
            np.cos(w(5) * X) + np.cos(w(5) * Y),  # x-only + y-only terms of freq 5
            np.cos(w(9) * (X + Y)) + 0.3,  # (k, k) product terms of freq 9
            np.sin(w(2) * X) * np.cos(w(2) * Y) + 0.2 * np.cos(w(7) * X),
            np.maximum(0.0, np.cos(w(5) * X + 0.3) + np.cos(w(5) * Y - 1.0)),  # ReLU neuron
        ],
        axis=-1,
    )
    spec = jax.jit(pm.neuron_frequency_spectrum)(jnp.asarray(acts, dtype=jnp.float32))
    assert spec.frac.shape == (4, p // 2 + 1)
    assert list(np.asarray(spec.dominant)) == [5, 9, 2, 5]
    np.testing.assert_allclose(spec.frac[0, 5], 1.0, atol=1e-4)
    np.testing.assert_allclose(spec.frac[1, 9], 1.0, atol=1e-4)
    np.testing.assert_allclose(spec.frac[:, 0], 0.0)
    assert float(spec.frac[3, 5]) > 0.5
    assert np.all(np.asarray(spec.frac).sum(-1) <= 1.0 + 1e-4)

    mask = pm.key_frequencies_from_neurons(jnp.asarray(acts, dtype=jnp.float32), 3)
    assert set(np.nonzero(np.asarray(mask))[0]) == {2, 5, 9}


# ---------------------------------------------------------------- restricted / excluded


@pytest.mark.parametrize("p", [11, 31])
def test_restricted_and_excluded_loss_known_answers(p):
    keys = [2, 5]
    L = _key_logits(p, keys, amps=[4.0, 3.0], phases=[0.0, 0.0])
    mask = jnp.zeros(p // 2 + 1, bool).at[jnp.asarray(keys)].set(True)
    labels = (jnp.arange(p)[:, None] + jnp.arange(p)[None, :]) % p

    full = pm.cross_entropy_on_pairs(L, labels)
    np.testing.assert_allclose(pm.restricted_logits(L, mask), L, atol=1e-4)
    np.testing.assert_allclose(pm.excluded_logits(L, mask), 0.0, atol=1e-4)
    np.testing.assert_allclose(pm.restricted_loss(L, labels, mask), full, rtol=1e-5)
    np.testing.assert_allclose(pm.excluded_loss(L, labels, mask), np.log(p), rtol=1e-5)
    # the excluded loss on a subset of (training) pairs is still log p
    train = jnp.asarray(np.random.default_rng(0).random((p, p)) < 0.3)
    np.testing.assert_allclose(pm.excluded_loss(L, labels, mask, train), np.log(p), rtol=1e-5)
    # cos(w(x+y-c)) with zero phase puts max logit on the correct answer: loss < log p
    assert float(full) < np.log(p)


def test_restricted_projection_properties():
    p = 13
    rng = np.random.default_rng(0)
    noise = jnp.asarray(rng.standard_normal((p, p, p)), dtype=jnp.float32)
    sig = _key_logits(p, [3], amps=[2.0], phases=[0.4])
    L = sig + noise
    mask = jnp.zeros(p // 2 + 1, bool).at[3].set(True)
    R = pm.restricted_logits(L, mask)
    E = pm.excluded_logits(L, mask)
    np.testing.assert_allclose(R + E, L, atol=1e-5)
    # idempotent projection, orthogonal decomposition
    np.testing.assert_allclose(pm.restricted_logits(R, mask), R, atol=1e-4)
    assert abs(float(jnp.sum(R * E))) < 1e-2 * float(jnp.sum(L * L))
    # matches brute-force projection onto normalised u_k, v_k
    x = np.arange(p)
    t = (x[:, None, None] + x[None, :, None] - x[None, None, :]).astype(np.float64)
    u = np.cos(2 * np.pi * 3 * t / p)
    v = np.sin(2 * np.pi * 3 * t / p)
    Ln = np.asarray(L, dtype=np.float64)
    brute = (Ln * u).sum() / (u * u).sum() * u + (Ln * v).sum() / (v * v).sum() * v
    np.testing.assert_allclose(R, brute, atol=1e-4)
    # a constant-along-c offset per pair does not change restricted logits
    offset = jnp.asarray(rng.standard_normal((p, p, 1)), dtype=jnp.float32)
    np.testing.assert_allclose(pm.restricted_logits(L + offset, mask), R, atol=1e-4)


def test_restricted_even_p_nyquist():
    p = 8
    L = _key_logits(p, [4, 1], amps=[1.5, 2.0], phases=[0.0, 0.3])
    mask = jnp.zeros(p // 2 + 1, bool).at[jnp.asarray([1, 4])].set(True)
    np.testing.assert_allclose(pm.restricted_logits(L, mask), L, atol=1e-4)
    np.testing.assert_allclose(pm.excluded_logits(L, mask), 0.0, atol=1e-4)


# ---------------------------------------------------------------- Gini / SSW / IPR


def test_gini():
    n = 10
    onehot = jnp.zeros(n).at[3].set(1.0)
    assert float(pm.gini(onehot)) == pytest.approx((n - 1) / n, abs=1e-6)
    assert float(pm.gini(onehot, normalized=True)) == pytest.approx(1.0, abs=1e-6)
    assert float(pm.gini(jnp.full(n, 2.5))) == pytest.approx(0.0, abs=1e-6)
    assert float(pm.gini(jnp.zeros(n))) == 0.0
    v = jnp.asarray(np.random.default_rng(0).random(n), dtype=jnp.float32)
    assert float(pm.gini(7.0 * v)) == pytest.approx(float(pm.gini(v)), abs=1e-6)
    # matches the pairwise definition
    vn = np.asarray(v, dtype=np.float64)
    ref = np.abs(vn[:, None] - vn[None, :]).sum() / (2 * n * vn.sum())
    assert float(pm.gini(v)) == pytest.approx(ref, abs=1e-5)
    # batched along leading axes
    assert pm.gini(jnp.stack([onehot, jnp.ones(n)])).shape == (2,)


def test_sum_squared_weights():
    params = {"a": jnp.ones((2, 3)), "b": [jnp.full((4,), 2.0), {"c": jnp.asarray(3.0)}]}
    assert float(jax.jit(pm.sum_squared_weights)(params)) == pytest.approx(6 + 16 + 9)


def test_inverse_participation_ratio():
    p = 97
    x = np.arange(p)
    rng = np.random.default_rng(0)
    cos_neuron = np.cos(2 * np.pi * 11 * x / p + 0.5)
    noise_neuron = rng.standard_normal(p)
    two_freq = np.cos(2 * np.pi * 3 * x / p) + np.sin(2 * np.pi * 20 * x / p)
    w = jnp.asarray(np.stack([cos_neuron, noise_neuron, two_freq], axis=1), dtype=jnp.float32)
    ipr = np.asarray(jax.jit(pm.inverse_participation_ratio)(w))
    assert ipr.shape == (3,)
    assert ipr[0] == pytest.approx(1.0, abs=1e-4)
    assert ipr[1] < 0.2 < ipr[0]
    assert ipr[2] == pytest.approx(0.5, abs=1e-4)
    # axis argument: neurons on axis 0
    np.testing.assert_allclose(pm.inverse_participation_ratio(w.T, axis=1), ipr, rtol=1e-5)
    # a DC offset is ignored by default
    np.testing.assert_allclose(pm.inverse_participation_ratio(w + 5.0), ipr, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- vmap


def test_vmap_over_runs_matches_per_item():
    p = 31
    Ws = jnp.stack([_planted_embedding(p, f, seed=s) for s, f in enumerate([[3, 7, 14], [1, 5, 9], [2, 4, 15]])])
    norms_v = jax.jit(jax.vmap(pm.embedding_fourier_norms))(Ws)
    norms_i = jnp.stack([pm.embedding_fourier_norms(W) for W in Ws])
    np.testing.assert_allclose(norms_v, norms_i, rtol=1e-5, atol=1e-5)

    masks_v = jax.vmap(lambda n: pm.key_frequency_mask(n, 3))(norms_v)
    masks_i = jnp.stack([pm.key_frequency_mask(n, 3) for n in norms_i])
    np.testing.assert_array_equal(masks_v, masks_i)
    assert [list(np.nonzero(np.asarray(m))[0]) for m in masks_v] == [[3, 7, 14], [1, 5, 9], [2, 4, 15]]

    ipr_v = jax.vmap(pm.inverse_participation_ratio)(Ws)
    ipr_i = jnp.stack([pm.inverse_participation_ratio(W) for W in Ws])
    np.testing.assert_allclose(ipr_v, ipr_i, rtol=1e-5)

    # restricted / excluded loss vmapped over runs (logits and masks both batched)
    q = 11
    Ls = jnp.stack([_key_logits(q, [k], amps=[3.0]) for k in (1, 2, 3)])
    ms = jnp.stack([jnp.zeros(q // 2 + 1, bool).at[k].set(True) for k in (1, 2, 3)])
    labels = (jnp.arange(q)[:, None] + jnp.arange(q)[None, :]) % q
    ex_v = jax.jit(jax.vmap(pm.excluded_loss, in_axes=(0, None, 0)))(Ls, labels, ms)
    re_v = jax.vmap(pm.restricted_loss, in_axes=(0, None, 0))(Ls, labels, ms)
    for i in range(3):
        assert float(ex_v[i]) == pytest.approx(float(pm.excluded_loss(Ls[i], labels, ms[i])), rel=1e-5)
        assert float(re_v[i]) == pytest.approx(float(pm.restricted_loss(Ls[i], labels, ms[i])), rel=1e-5)
    np.testing.assert_allclose(ex_v, np.log(q), rtol=1e-5)

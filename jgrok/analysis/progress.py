"""Progress measures for grokking on modular addition.

Pure, model-agnostic functions operating on plain arrays (embedding / unembedding
matrices, neuron activations, logits over the full ``(x, y)`` input grid).  They
follow the definitions of

* Nanda et al. 2023, "Progress measures for grokking via mechanistic
  interpretability" (Fourier norms of embeddings, key frequencies, restricted /
  excluded loss, Gini coefficients, sum of squared weights), and
* Gromov 2023, "Grokking modular arithmetic" (inverse participation ratio of the
  Fourier spectrum of neuron weights).

Every function except :func:`key_frequencies` (whose output size is data
dependent) is written in ``jax.numpy``, is jittable, and can be ``jax.vmap``-ed by
the caller over a leading "run" axis.  The modulus ``p`` is always taken from
static array shapes, so Fourier bases and index tables are trace-time constants.

Conventions
-----------
Fourier basis.  ``fourier_basis(p)`` is a real orthonormal ``(p, p)`` matrix ``F``
whose *rows* are basis vectors over ``Z_p``::

    row 0          : const            1/sqrt(p)
    row 2k-1       : cos k            sqrt(2/p) cos(2 pi k x / p),  k = 1..(p-1)//2
    row 2k         : sin k            sqrt(2/p) sin(2 pi k x / p)
    row p-1 (even p only): cos p/2    (-1)^x / sqrt(p)             (Nyquist)

Frequencies are ``k = 0..K`` with ``K = p // 2`` (so ``K + 1`` frequencies in
total, frequency 0 being the constant).  Per-frequency quantities always have a
trailing/leading axis of length ``K + 1`` indexed directly by ``k``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jgrok.losses import cross_entropy_high_precision

__all__ = [
    "fourier_basis",
    "basis_labels",
    "frequency_of_row",
    "n_frequencies",
    "fourier_norms",
    "embedding_fourier_norms",
    "unembedding_fourier_norms",
    "key_frequencies",
    "key_frequency_mask",
    "NeuronSpectrum",
    "neuron_frequency_spectrum",
    "key_frequencies_from_neurons",
    "restricted_logits",
    "excluded_logits",
    "cross_entropy_on_pairs",
    "restricted_loss",
    "excluded_loss",
    "gini",
    "sum_squared_weights",
    "inverse_participation_ratio",
]


# --------------------------------------------------------------------------
# Fourier basis
# --------------------------------------------------------------------------


def _fourier_basis_np(p: int) -> np.ndarray:
    p = int(p)
    if p < 1:
        raise ValueError(f"p must be >= 1, got {p}")
    x = np.arange(p)
    rows = [np.full(p, 1.0 / np.sqrt(p))]
    for k in range(1, (p - 1) // 2 + 1):
        theta = 2.0 * np.pi * k * x / p
        rows.append(np.sqrt(2.0 / p) * np.cos(theta))
        rows.append(np.sqrt(2.0 / p) * np.sin(theta))
    if p % 2 == 0 and p > 1:
        rows.append(np.cos(np.pi * x) / np.sqrt(p))  # Nyquist: (-1)^x
    return np.stack(rows, axis=0)


def fourier_basis(p: int, dtype=jnp.float32) -> jnp.ndarray:
    """Real orthonormal Fourier basis over ``Z_p``; shape ``(p, p)``, rows = basis vectors.

    Row order: ``const, cos 1, sin 1, ..., cos K', sin K'`` with ``K' = (p-1)//2``,
    followed for even ``p`` by the Nyquist row ``cos p/2`` (entries ``±1/sqrt(p)``).
    ``F @ F.T == I``.  Built in float64 numpy, returned as a ``dtype`` constant.
    """
    return jnp.asarray(_fourier_basis_np(p), dtype=dtype)


def basis_labels(p: int) -> list[str]:
    """Human-readable labels of the rows of :func:`fourier_basis` (``"const"``, ``"cos 1"``, ...)."""
    labels = ["const"]
    for k in range(1, (int(p) - 1) // 2 + 1):
        labels += [f"cos {k}", f"sin {k}"]
    if int(p) % 2 == 0 and int(p) > 1:
        labels.append(f"cos {int(p) // 2}")
    return labels


def frequency_of_row(p: int) -> np.ndarray:
    """Int array ``(p,)``: the frequency ``k`` of each basis row (0 for const, ``k`` for cos/sin k).

    Returned as a numpy array so it can be used as a static index table under jit.
    """
    freqs = [0]
    for k in range(1, (int(p) - 1) // 2 + 1):
        freqs += [k, k]
    if int(p) % 2 == 0 and int(p) > 1:
        freqs.append(int(p) // 2)
    return np.asarray(freqs, dtype=np.int32)


def n_frequencies(p: int) -> int:
    """Number of distinct frequencies including the constant: ``p // 2 + 1``."""
    return int(p) // 2 + 1


def _freq_onehot(p: int) -> np.ndarray:
    """``(K+1, p)`` 0/1 matrix: ``G[k, r] = 1`` iff basis row ``r`` has frequency ``k``."""
    f = frequency_of_row(p)
    return (np.arange(n_frequencies(p))[:, None] == f[None, :]).astype(np.float32)


# --------------------------------------------------------------------------
# Fourier norms of embeddings / unembeddings
# --------------------------------------------------------------------------


def fourier_norms(M: jnp.ndarray, axis: int = 0) -> jnp.ndarray:
    """Per-frequency Frobenius norm of ``M`` after a Fourier transform along ``axis``.

    ``p = M.shape[axis]``.  Computes ``F @ M`` along ``axis`` and, for each frequency
    ``k``, ``sqrt(sum of squares)`` over the basis rows of frequency ``k`` (cos and
    sin rows combined) and over all other axes.  Returns shape ``(p//2 + 1,)``;
    entry 0 is the constant (mean) component.
    """
    M = jnp.moveaxis(jnp.asarray(M), axis, 0)
    p = M.shape[0]
    F = fourier_basis(p, dtype=M.dtype if jnp.issubdtype(M.dtype, jnp.floating) else jnp.float32)
    coef = jnp.tensordot(F, M, axes=(1, 0))  # (p, ...)
    row_power = jnp.sum(coef.reshape(p, -1) ** 2, axis=1)  # (p,)
    G = jnp.asarray(_freq_onehot(p), dtype=row_power.dtype)
    return jnp.sqrt(G @ row_power)


def embedding_fourier_norms(W_E: jnp.ndarray) -> jnp.ndarray:
    """Fourier norms of an embedding matrix ``W_E`` of shape ``(p, d)`` (rows = operand tokens).

    Pass only the ``p`` number-token rows (slice off e.g. an ``=`` token first).
    Returns ``(p//2 + 1,)``.
    """
    return fourier_norms(W_E, axis=0)


def unembedding_fourier_norms(W_U: jnp.ndarray) -> jnp.ndarray:
    """Fourier norms of an unembedding ``W_U`` of shape ``(d, p)`` (columns = answer tokens)."""
    return fourier_norms(W_U, axis=1)


# --------------------------------------------------------------------------
# Key frequencies
# --------------------------------------------------------------------------


def key_frequencies(norms, k: Optional[int] = None, threshold: float = 3.0) -> np.ndarray:
    """Key frequencies from per-frequency norms (numpy; output size is data dependent).

    ``norms`` has shape ``(K+1,)`` as returned by :func:`fourier_norms`; the
    constant (index 0) is never a key frequency.

    Rule:
      * if ``k`` is given: the ``k`` non-constant frequencies with the largest norm;
      * otherwise: every non-constant frequency whose share of the non-constant
        squared norm, ``norms[f]**2 / sum_{f'>=1} norms[f']**2``, exceeds
        ``threshold`` times the mean share ``1 / K`` (default: 3x the mean).

    Returns a sorted int array of frequencies.  Use :func:`key_frequency_mask`
    inside jit.
    """
    n = np.asarray(norms, dtype=np.float64)
    nz = n[1:]
    if nz.size == 0:
        return np.zeros((0,), dtype=np.int32)
    if k is not None:
        k = int(min(k, nz.size))
        idx = np.argsort(-nz, kind="stable")[:k] + 1
        return np.sort(idx).astype(np.int32)
    power = nz**2
    total = power.sum()
    if total <= 0:
        return np.zeros((0,), dtype=np.int32)
    share = power / total
    idx = np.nonzero(share > threshold / nz.size)[0] + 1
    return np.sort(idx).astype(np.int32)


def key_frequency_mask(norms: jnp.ndarray, n_keys: int) -> jnp.ndarray:
    """Jittable boolean mask ``(K+1,)`` selecting the top ``n_keys`` non-constant frequencies by norm.

    ``n_keys`` must be static.  Index 0 (constant) is always False.  Ties are
    broken towards the lower frequency (``jax.lax.top_k`` order).
    """
    norms = jnp.asarray(norms)
    n = norms.shape[-1]
    n_keys = int(min(n_keys, n - 1))
    if n_keys <= 0:
        return jnp.zeros(norms.shape, dtype=bool)
    scores = norms.at[..., 0].set(-jnp.inf)
    _, idx = jax.lax.top_k(scores, n_keys)
    return jnp.any(jnp.arange(n) == idx[..., :, None], axis=-2)


# --------------------------------------------------------------------------
# Neuron frequency spectrum
# --------------------------------------------------------------------------


class NeuronSpectrum(NamedTuple):
    """Output of :func:`neuron_frequency_spectrum` (a pytree, vmappable)."""

    frac: jnp.ndarray
    """``(n_neurons, K+1)``: fraction of each neuron's variance explained by frequency ``k``
    (column 0 is always 0)."""
    dominant: jnp.ndarray
    """``(n_neurons,)`` int: argmax over ``k >= 1`` of ``frac``."""
    total_var: jnp.ndarray
    """``(n_neurons,)``: sum of squared 2-D Fourier coefficients except the (const, const) term,
    i.e. ``sum_{x,y} (a(x,y) - mean a)^2``."""


def neuron_frequency_spectrum(acts: jnp.ndarray, eps: float = 1e-12) -> NeuronSpectrum:
    """Per-neuron 2-D Fourier decomposition of activations over the input grid.

    ``acts`` has shape ``(p, p, n_neurons)`` with ``acts[x, y, n]`` the activation of
    neuron ``n`` on input ``(x, y)``.  For each neuron, ``C = F @ A @ F.T`` (rows
    index the x-basis, columns the y-basis).  The variance explained by frequency
    ``k >= 1`` is the sum of squared coefficients of

      * ``(k, const)``  -- terms in ``cos/sin(w_k x)`` only,
      * ``(const, k)``  -- terms in ``cos/sin(w_k y)`` only,
      * ``(k, k)``      -- the 4 products ``{cos,sin}(w_k x) {cos,sin}(w_k y)``
        (these span ``cos/sin(w_k (x + y))`` and ``cos/sin(w_k (x - y))``),

    divided by the neuron's total variance (all coefficients except
    ``(const, const)``).  Cross-frequency products ``(k, k')`` with ``k != k'`` are
    attributed to no frequency, so a row of ``frac`` sums to at most 1.
    """
    acts = jnp.asarray(acts)
    p = acts.shape[0]
    if acts.shape[1] != p:
        raise ValueError(f"acts must have shape (p, p, n_neurons), got {acts.shape}")
    dtype = acts.dtype if jnp.issubdtype(acts.dtype, jnp.floating) else jnp.float32
    F = fourier_basis(p, dtype=dtype)
    C = jnp.einsum("ia,abn,jb->ijn", F, acts.astype(dtype), F) ** 2  # (p, p, N)
    G = jnp.asarray(_freq_onehot(p), dtype=dtype)  # (K+1, p)
    x_only = G @ C[:, 0, :]  # (K+1, N)
    y_only = G @ C[0, :, :]
    both = jnp.einsum("ki,ijn,kj->kn", G, C, G)
    per_k = (x_only + y_only + both).at[0].set(0.0)  # (K+1, N)
    total = jnp.sum(C, axis=(0, 1)) - C[0, 0]
    frac = (per_k / jnp.maximum(total, eps)).T  # (N, K+1)
    dominant = jnp.argmax(frac[:, 1:], axis=-1) + 1
    return NeuronSpectrum(frac=frac, dominant=dominant.astype(jnp.int32), total_var=total)


def key_frequencies_from_neurons(acts: jnp.ndarray, n_keys: int) -> jnp.ndarray:
    """Jittable boolean mask ``(K+1,)`` of the ``n_keys`` frequencies that explain most neuron variance.

    Score of frequency ``k`` = ``sum_n frac[n, k]`` (a soft count of neurons
    dominated by ``k``, see :func:`neuron_frequency_spectrum`); the top
    ``n_keys`` scores (``k >= 1``) are selected.
    """
    spec = neuron_frequency_spectrum(acts)
    return key_frequency_mask(jnp.sum(spec.frac, axis=0), n_keys)


# --------------------------------------------------------------------------
# Restricted / excluded logits and losses
# --------------------------------------------------------------------------


def _sum_diff_index(p: int) -> np.ndarray:
    """``idx[a, b, z] = (a + b - z) mod p`` (static int32 table, shape ``(p, p, p)``)."""
    a = np.arange(p)
    return ((a[:, None, None] + a[None, :, None] - a[None, None, :]) % p).astype(np.int32)


def _key_direction_projection(logits: jnp.ndarray, freq_mask: jnp.ndarray) -> jnp.ndarray:
    """Orthogonal projection of ``logits`` (p, p, p) onto span{u_k, v_k : freq_mask[k]}."""
    logits = jnp.asarray(logits)
    p = logits.shape[0]
    if logits.shape != (p, p, p):
        raise ValueError(f"logits must have shape (p, p, p) over all (x, y) pairs, got {logits.shape}")
    dtype = logits.dtype if jnp.issubdtype(logits.dtype, jnp.floating) else jnp.float32
    logits = logits.astype(dtype)
    idx = jnp.asarray(_sum_diff_index(p))
    # S[t] = sum_{x,y} logits[x, y, (x + y - t) mod p] = sum over the level set {x+y-c = t}.
    S = jnp.sum(jnp.take_along_axis(logits, idx, axis=2), axis=(0, 1))
    F = fourier_basis(p, dtype=dtype)
    row_mask = jnp.asarray(freq_mask, dtype=bool)[..., jnp.asarray(frequency_of_row(p))]
    # Orthonormal basis of the functions of t = x+y-c: F[r, t] / p (each t occurs p^2 times).
    g = F.T @ (row_mask.astype(dtype) * (F @ S)) / (p * p)  # (p,) as a function of t
    return g[idx]  # proj[x, y, c] = g[(x + y - c) mod p]


def restricted_logits(logits: jnp.ndarray, freq_mask: jnp.ndarray) -> jnp.ndarray:
    """Logits restricted to the key-frequency directions (Nanda et al. 2023).

    ``logits`` has shape ``(p, p, p)``: ``logits[x, y, c]`` for every input pair and
    every answer class ``c``.  ``freq_mask`` is a bool ``(p//2 + 1,)`` mask over
    frequencies (e.g. from :func:`key_frequency_mask`).

    For each frequency ``k`` define the (x, y, c)-space directions
    ``u_k = cos(2 pi k (x + y - c) / p)`` and ``v_k = sin(2 pi k (x + y - c) / p)``
    (``v_k`` vanishes for the even-``p`` Nyquist frequency).  They are mutually
    orthogonal; the result is the orthogonal projection of the full logit tensor
    onto ``span{u_k, v_k : freq_mask[k]}``.  Frequency 0 (a global constant)
    is included only if ``freq_mask[0]`` is True; since a constant shift does not
    change the softmax, this does not affect :func:`restricted_loss`
    (:func:`key_frequency_mask` never sets it).
    """
    return _key_direction_projection(logits, freq_mask)


def excluded_logits(logits: jnp.ndarray, freq_mask: jnp.ndarray) -> jnp.ndarray:
    """``logits - restricted_logits(logits, freq_mask)``: key-frequency directions removed."""
    logits = jnp.asarray(logits)
    return logits - _key_direction_projection(logits, freq_mask)


def _default_labels(p: int) -> jnp.ndarray:
    a = jnp.arange(p)
    return (a[:, None] + a[None, :]) % p


def cross_entropy_on_pairs(
    logits: jnp.ndarray,
    labels: Optional[jnp.ndarray] = None,
    pair_mask: Optional[jnp.ndarray] = None,
) -> jnp.ndarray:
    """Mean cross-entropy of ``logits`` (p, p, p_out) over the ``(x, y)`` pairs selected by ``pair_mask``.

    ``labels`` (p, p) int defaults to ``(x + y) mod p``; ``pair_mask`` (p, p) bool
    defaults to all pairs. Computed as `jgrok.losses.cross_entropy_high_precision` (Nanda et
    al. take theirs in float64): after grokking the per-pair losses fall far below float32's
    resolution next to 1, where a plain log-softmax returns 0.
    """
    logits = jnp.asarray(logits)
    p = logits.shape[0]
    if labels is None:
        labels = _default_labels(p)
    nll = cross_entropy_high_precision(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)),
                                       jnp.asarray(labels).astype(jnp.int32))
    if pair_mask is None:
        return jnp.mean(nll)
    w = jnp.asarray(pair_mask).astype(nll.dtype)
    return jnp.sum(nll * w) / jnp.maximum(jnp.sum(w), 1.0)


def restricted_loss(
    logits: jnp.ndarray,
    labels: Optional[jnp.ndarray],
    freq_mask: jnp.ndarray,
    pair_mask: Optional[jnp.ndarray] = None,
) -> jnp.ndarray:
    """Cross-entropy of :func:`restricted_logits` on the pairs in ``pair_mask`` (default: all pairs)."""
    return cross_entropy_on_pairs(restricted_logits(logits, freq_mask), labels, pair_mask)


def excluded_loss(
    logits: jnp.ndarray,
    labels: Optional[jnp.ndarray],
    freq_mask: jnp.ndarray,
    pair_mask: Optional[jnp.ndarray] = None,
) -> jnp.ndarray:
    """Cross-entropy of :func:`excluded_logits` on the pairs in ``pair_mask``.

    Nanda et al. evaluate the excluded loss on the *training* pairs, so pass the
    training mask here.  Default: all pairs.
    """
    return cross_entropy_on_pairs(excluded_logits(logits, freq_mask), labels, pair_mask)


# --------------------------------------------------------------------------
# Sparsity / weight measures
# --------------------------------------------------------------------------


def gini(x: jnp.ndarray, normalized: bool = False, eps: float = 1e-12) -> jnp.ndarray:
    """Gini coefficient of a nonnegative vector (along the last axis).

    Standard definition ``G = sum_{i,j} |x_i - x_j| / (2 n sum_i x_i)``: 0 for a
    constant vector, maximal ``(n - 1) / n`` for a one-hot vector, invariant to
    positive rescaling.  With ``normalized=True`` the result is multiplied by
    ``n / (n - 1)`` so that one-hot gives exactly 1.  An all-zero vector gives 0.
    """
    x = jnp.asarray(x)
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    n = x.shape[-1]
    xs = jnp.sort(x, axis=-1)
    i = jnp.arange(1, n + 1, dtype=x.dtype)
    total = jnp.sum(xs, axis=-1)
    g = (2.0 * jnp.sum(i * xs, axis=-1)) / (n * jnp.maximum(total, eps)) - (n + 1.0) / n
    g = jnp.where(total > eps, g, 0.0)
    if normalized and n > 1:
        g = g * n / (n - 1.0)
    return g


def sum_squared_weights(params: Any) -> jnp.ndarray:
    """Sum of squares of every (array) leaf in a params pytree."""
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        return jnp.asarray(0.0)
    return sum(jnp.sum(jnp.square(jnp.asarray(l).astype(jnp.float32))) for l in leaves)


def inverse_participation_ratio(
    w: jnp.ndarray,
    axis: int = 0,
    r: int = 2,
    include_constant: bool = False,
    eps: float = 1e-12,
) -> jnp.ndarray:
    """Gromov's inverse participation ratio of each neuron's Fourier spectrum.

    ``w`` has the token axis (length ``p``) at ``axis``, e.g. first-layer weights of
    shape ``(p, n_neurons)`` for the ``x`` operand.  For each neuron (every index
    of the other axes) the power per frequency ``P_k = |c_k|^2`` is computed with
    :func:`fourier_basis` (cos and sin rows of frequency ``k`` summed, i.e. the
    DFT's ``+k`` and ``-k`` bins merged), over ``k = 1..p//2`` (the constant is
    excluded unless ``include_constant``).  Then, with ``r = 2`` by default,

        IPR_r = sum_k |c_k|^(2r) / (sum_k |c_k|^2)^r = sum_k P_k^r / (sum_k P_k)^r,

    which is 1 for a single-frequency (pure cos/sin, any phase) neuron and
    ``1 / K`` for a flat spectrum over ``K`` frequencies.  Returns an array of
    ``w.shape`` with ``axis`` removed.  All-zero neurons give 0.
    """
    w = jnp.moveaxis(jnp.asarray(w), axis, 0)
    w = w.astype(jnp.promote_types(w.dtype, jnp.float32))
    p = w.shape[0]
    F = fourier_basis(p, dtype=w.dtype)
    coef = jnp.tensordot(F, w, axes=(1, 0))  # (p, ...)
    G = jnp.asarray(_freq_onehot(p), dtype=w.dtype)
    power = jnp.tensordot(G, coef**2, axes=(1, 0))  # (K+1, ...)
    if not include_constant:
        power = power[1:]
    num = jnp.sum(power**r, axis=0)
    den = jnp.sum(power, axis=0) ** r
    return jnp.where(den > eps, num / jnp.maximum(den, eps), 0.0)

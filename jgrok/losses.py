"""Losses shared by training (`jgrok.train`) and the progress measures
(`jgrok.analysis.progress`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["cross_entropy_high_precision"]


def cross_entropy_high_precision(logits, labels):
    """Cross-entropy accurate to float32's relative precision however small the loss is.

    With `d_j = z_j - z_y` (the other logits against the answer's), the loss is
    `log(1 + sum_{j != y} exp(d_j))`. Once the answer's logit leads by more than ~17, the sum
    falls below float32's resolution next to 1, and the usual `logsumexp(z) - z_y` returns 0
    with a gradient that no longer sums to zero over the logits; `log1p` keeps the loss and
    its gradient (`-s / (1 + s)` on the answer's logit) exact. When the answer's logit does
    not lead, the terms are shifted by the largest logit so that none overflows."""
    answer = jnp.take_along_axis(logits, labels[..., None], axis=-1)
    d = logits - answer
    others = jnp.arange(logits.shape[-1]) != labels[..., None]
    top = jnp.maximum(jnp.max(jnp.where(others, d, -jnp.inf), axis=-1, keepdims=True), 0.0)
    top = jax.lax.stop_gradient(top)  # a shift: the function does not depend on it
    s = jnp.sum(jnp.where(others, jnp.exp(d - top), 0.0), axis=-1)
    # top == 0: log1p(s); otherwise top + log(s + exp(-top)), the same function shifted
    return jnp.where(top[..., 0] > 0, top[..., 0] + jnp.log(s + jnp.exp(-top[..., 0])),
                     jnp.log1p(s))

"""The decoder-only transformer of Power et al. (2022), as in openai/grok's code.

Token embedding + fixed sinusoidal positions, `n_layers` post-LayerNorm blocks
(x = LN(x + Attn(x)); x = LN(x + FFN(x))), causal multi-head attention, a ReLU FFN of width
`d_ff` (4 x d_model), no biases, and an untied unembedding that maps the last position to
logits over the whole vocabulary.

With `layer_norm=False` and `positions="learned"` the same class is the 1-layer model of Nanda
et al. (2023): residual blocks x = x + Attn(x); x = x + FFN(x), learned position embeddings.

Two ways to compute the same function (`shortcuts`), with the same parameters (names, shapes
and initialization), so checkpoints and initial weights do not depend on the choice:

- `shortcuts=False`, the plain computation: every block on every position, Flax's
  `MultiHeadDotProductAttention`.
- `shortcuts=True` (the default): only what the output reads. (1) The output is the last
  position's, so the last block needs keys and values of every position but the query, the
  attention output, the FFN and the LayerNorms only at the last position. (2) The first
  block's input is the embedding sum E[token] + P[position] itself (post-LN: no LayerNorm
  before the first attention), so its Q/K/V projections are applied once to the V x T table
  of all (token, position) sums and the rows are gathered per example, when the table has
  fewer rows than the batch. Both are exact in real arithmetic; in float32 the outputs differ
  from the plain computation by summation order only (tests/test_models.py states the
  tolerance). For the paper's 2-layer model this executes ~59% of the plain matmul FLOPs.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jgrok.models.mlp import to_out


def sinusoidal_positions(max_len: int, d_model: int) -> np.ndarray:
    pos = np.arange(max_len)[:, None]
    i = np.arange(0, d_model, 2)[None, :]
    angle = pos / np.power(10000.0, i / d_model)
    pe = np.zeros((max_len, d_model), np.float32)
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle[:, : d_model // 2])
    return pe


class _BlockBase(nn.Module):
    """What `Block` and `FastBlock` share: their settings, and everything after the attention's
    residual sum (LayerNorm, the ReLU feed-forward layer with its residual, LayerNorm), so both
    have the same parameter names."""

    d_model: int
    n_heads: int
    d_ff: int
    use_bias: bool
    layer_norm: bool = True
    dtype: Optional[Any] = None

    def _after_attention(self, x):
        """Called from the subclass's compact `__call__` (the submodules belong to it)."""
        if self.layer_norm:
            x = nn.LayerNorm(use_bias=self.use_bias, dtype=self.dtype, name="attn_norm")(x)
        h = nn.Dense(self.d_ff, use_bias=self.use_bias, dtype=self.dtype, name="ffn_in")(x)
        x = x + nn.Dense(self.d_model, use_bias=self.use_bias, dtype=self.dtype,
                         name="ffn_out")(nn.relu(h))
        if self.layer_norm:
            x = nn.LayerNorm(use_bias=self.use_bias, dtype=self.dtype, name="ffn_norm")(x)
        return x


class Block(_BlockBase):
    """The plain block (`shortcuts=False`)."""

    @nn.compact
    def __call__(self, x):
        mask = nn.make_causal_mask(jnp.ones(x.shape[:-1], jnp.int32))
        a = nn.MultiHeadDotProductAttention(
            num_heads=self.n_heads, qkv_features=self.d_model, out_features=self.d_model,
            use_bias=self.use_bias, dtype=self.dtype, name="attn")(x, x, mask=mask)
        x = x + a
        return self._after_attention(x)


class Attention(nn.Module):
    """Causal multi-head attention with the parameters of Flax's
    `MultiHeadDotProductAttention` (query/key/value/out `DenseGeneral`s, same initializers),
    split into projection and combination so that the caller chooses the rows projected."""

    d_model: int
    n_heads: int
    use_bias: bool
    dtype: Optional[Any] = None

    def setup(self):
        hd = self.d_model // self.n_heads
        dense = dict(features=(self.n_heads, hd), axis=-1, use_bias=self.use_bias,
                     dtype=self.dtype)
        self.query = nn.DenseGeneral(**dense)
        self.key = nn.DenseGeneral(**dense)
        self.value = nn.DenseGeneral(**dense)
        self.out = nn.DenseGeneral(features=self.d_model, axis=(-2, -1), use_bias=self.use_bias,
                                   dtype=self.dtype)

    def __call__(self, q, k, v):
        """q (..., Tq, h, hd), k and v (..., T, h, hd); causal with the queries at the last
        Tq positions. Returns (..., Tq, d_model)."""
        tq, t = q.shape[-3], k.shape[-3]
        q = q / jnp.sqrt(q.shape[-1]).astype(q.dtype)
        w = jnp.einsum("...qhd,...khd->...hqk", q, k)
        if tq > 1:
            allowed = (np.arange(t)[None, :] <= np.arange(t - tq, t)[:, None])
            w = jnp.where(allowed, w, jnp.finfo(w.dtype).min)
        w = jax.nn.softmax(w).astype(q.dtype)
        return self.out(jnp.einsum("...hqk,...khd->...qhd", w, v))


class FastBlock(_BlockBase):
    """The block of `shortcuts=True`; same parameters as `Block`.

    `x` (..., T, d): the block's input (for the residual). `table`, `index`: optional; the
    input is `table[index]` (table (M, d), index (..., T) ints), and Q/K/V are projected on
    the table's M rows and gathered. `last_only`: compute the output at the last position
    only, shape (..., 1, d)."""

    @nn.compact
    def __call__(self, x, table=None, index=None, last_only=False):
        attn = Attention(self.d_model, self.n_heads, self.use_bias, self.dtype, name="attn")
        q_idx = index[..., -1:] if last_only and index is not None else index
        if table is not None:
            q = attn.query(table)[q_idx]
            k, v = attn.key(table)[index], attn.value(table)[index]
        else:
            q = attn.query(x[..., -1:, :] if last_only else x)
            k, v = attn.key(x), attn.value(x)
        if last_only:
            x = x[..., -1:, :]
        x = x + attn(q, k, v)
        return self._after_attention(x)


class Transformer(nn.Module):
    vocab_size: int
    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_ff: int = 512
    max_len: int = 8
    use_bias: bool = False
    layer_norm: bool = True
    positions: str = "sinusoidal"  # sinusoidal | learned
    shortcuts: bool = True  # compute only what the output needs (module docstring); exact
    dtype: Optional[Any] = None  # computation dtype (None: the parameters'; they stay float32)

    @nn.compact
    def __call__(self, tokens):
        """tokens: (..., T) int -> logits (..., vocab) at the last position."""
        embed = nn.Embed(self.vocab_size, self.d_model, dtype=self.dtype, name="embed")
        if self.positions == "learned":
            pe = self.param("pos_embed", nn.initializers.normal(0.02),
                            (self.max_len, self.d_model))
        else:
            pe = jnp.asarray(sinusoidal_positions(self.max_len, self.d_model))
        t = tokens.shape[-1]
        pe = pe[:t] if self.dtype is None else pe[:t].astype(self.dtype)
        x = embed(tokens) + pe
        args = (self.d_model, self.n_heads, self.d_ff, self.use_bias, self.layer_norm,
                self.dtype)
        if not self.shortcuts:
            for i in range(self.n_layers):
                x = Block(*args, name=f"block_{i}")(x)
            last = x[..., -1, :]
        else:
            # table of every (token, position) sum, when it is smaller than the batch's rows
            rows = math.prod(tokens.shape[:-1])
            table = index = None
            if self.vocab_size < rows:
                vocab = embed(jnp.arange(self.vocab_size))
                table = (vocab[:, None, :] + pe[None]).reshape(-1, self.d_model)
                index = tokens * t + jnp.arange(t)
            for i in range(self.n_layers):
                x = FastBlock(*args, name=f"block_{i}")(
                    x, table if i == 0 else None, index if i == 0 else None,
                    last_only=i == self.n_layers - 1)
            last = x[..., -1, :]
        logits = nn.Dense(self.vocab_size, use_bias=False, dtype=self.dtype,
                          name="unembed")(last)
        return to_out(logits, self.dtype)

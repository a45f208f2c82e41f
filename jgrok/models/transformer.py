"""The decoder-only transformer of Power et al. (2022), as in openai/grok's code.

Token embedding + fixed sinusoidal positions, `n_layers` post-LayerNorm blocks
(x = LN(x + Attn(x)); x = LN(x + FFN(x))), causal multi-head attention, a ReLU FFN of width
`d_ff` (4 x d_model), no biases, and an untied unembedding that maps the last position to
logits over the whole vocabulary.

With `layer_norm=False` and `positions="learned"` the same class is the 1-layer model of Nanda
et al. (2023): residual blocks x = x + Attn(x); x = x + FFN(x), learned position embeddings.

`dropout` (openai/grok's place and rate: default 0, off): in a training call
(`train=True`, a "dropout" rng) each block's feed-forward output is dropped out before its
residual sum, x = LN(x + Dropout(FFN(x))); openai/grok's attention dropout is commented out
in its code, so there is none. Evaluation (`train=False`, the default) is deterministic.

Two ways to compute the same function (`shortcuts`), with the same parameters (names, shapes
and initialization), so checkpoints and initial weights do not depend on the choice:

- `shortcuts=False`, the plain computation: every block on every position, Flax's
  `MultiHeadDotProductAttention`.
- `shortcuts=True` (the default): only what the output reads, and what differs between
  examples. (1) The output is the last position's, so the last block needs keys and values of
  every position but the query, the attention output, the FFN and the LayerNorms only at the
  last position. (2) Position 0 attends to itself only, so in every block its value is a
  function of its token alone: it is computed once per vocabulary entry (V rows) and gathered
  per example, when the vocabulary is smaller than the batch. (3) The first block's input is
  the embedding sum E[token] + P[position] itself (post-LN: no LayerNorm before the first
  attention), so its Q/K/V projections are applied once to the V x T table of all
  (token, position) sums and gathered, under the same condition. All three are exact in real
  arithmetic; in float32 the outputs differ from the plain computation by summation order
  only (tests/test_models.py states the tolerance). For the paper's 2-layer model
  (p = 97, batch 512) this executes 50% of the plain matmul FLOPs. A training call with
  dropout does without (2) and (3) (position 0's values then differ per example); its masks
  are drawn for every position in both computations, so both drop the same values.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jgrok.models import linear
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
    kernel_init: Optional[Any] = None  # None: Flax's default (LeCun normal)
    dropout: float = 0.0  # rate on the feed-forward output in training calls

    def _kernel(self) -> dict:
        return {} if self.kernel_init is None else dict(kernel_init=self.kernel_init)

    def _after_attention(self, x, train: bool = False, n_positions: Optional[int] = None):
        """Called from the subclass's compact `__call__` (the submodules belong to it).
        `x` (..., t, d) holds the last t of the block's `n_positions` positions (default t),
        so that the dropout mask, drawn for all of them, does not depend on how many are
        computed."""
        if self.layer_norm:
            x = nn.LayerNorm(use_bias=self.use_bias, dtype=self.dtype, name="attn_norm")(x)
        h = linear.Dense(self.d_ff, use_bias=self.use_bias, dtype=self.dtype, name="ffn_in",
                         **self._kernel())(x)
        f = linear.Dense(self.d_model, use_bias=self.use_bias, dtype=self.dtype,
                         name="ffn_out", **self._kernel())(nn.relu(h))
        if train and self.dropout > 0:
            t = f.shape[-2]
            n = t if n_positions is None else n_positions
            keep = jax.random.bernoulli(self.make_rng("dropout"), 1.0 - self.dropout,
                                        f.shape[:-2] + (n, f.shape[-1]))[..., n - t:, :]
            f = jnp.where(keep, f / jnp.asarray(1.0 - self.dropout, f.dtype),
                          jnp.zeros((), f.dtype))
        x = x + f
        if self.layer_norm:
            x = nn.LayerNorm(use_bias=self.use_bias, dtype=self.dtype, name="ffn_norm")(x)
        return x


class Block(_BlockBase):
    """The plain block (`shortcuts=False`)."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        mask = nn.make_causal_mask(jnp.ones(x.shape[:-1], jnp.int32))
        a = nn.MultiHeadDotProductAttention(
            num_heads=self.n_heads, qkv_features=self.d_model, out_features=self.d_model,
            use_bias=self.use_bias, dtype=self.dtype, name="attn", **self._kernel())(
                x, x, mask=mask)
        x = x + a
        return self._after_attention(x, train)


class Attention(nn.Module):
    """Causal multi-head attention with the parameters of Flax's
    `MultiHeadDotProductAttention` (query/key/value/out `DenseGeneral`s, same initializers),
    split into projection and combination so that the caller chooses the rows projected."""

    d_model: int
    n_heads: int
    use_bias: bool
    dtype: Optional[Any] = None
    kernel_init: Optional[Any] = None  # None: Flax's default (LeCun normal)

    def setup(self):
        hd = self.d_model // self.n_heads
        kernel = {} if self.kernel_init is None else dict(kernel_init=self.kernel_init)
        dense = dict(features=(self.n_heads, hd), axis=-1, use_bias=self.use_bias,
                     dtype=self.dtype, **kernel)
        self.query = linear.DenseGeneral(**dense)
        self.key = linear.DenseGeneral(**dense)
        self.value = linear.DenseGeneral(**dense)
        self.out = linear.DenseGeneral(features=self.d_model, axis=(-2, -1),
                                       use_bias=self.use_bias, dtype=self.dtype, **kernel)

    def __call__(self, q, keys, values):
        """q (..., Tq, h, hd); `keys` and `values`: sequences of parts (..., T_i, h, hd) that
        together (concatenated on the position axis) are the T positions attended to; causal
        with the queries at the last Tq positions. Returns (..., Tq, d_model).

        Scores and weighted values are broadcast products summed over one axis, not einsums:
        with T = 4 positions they are tiny batched matmuls per (example, head), for which
        XLA:CPU first copies q, k, v and the weights into head-major layout (and back in the
        backward pass); written element-wise they fuse in the (..., q, k, h) layout as they
        are. The parts are taken as they come, so that position 0's keys and values (gathered
        from the vocabulary's rows) need not be copied into one array with the others'."""
        tq, t = q.shape[-3], sum(k.shape[-3] for k in keys)
        q = q / jnp.sqrt(q.shape[-1]).astype(q.dtype)
        w = jnp.concatenate([jnp.sum(q[..., :, None, :, :] * k[..., None, :, :, :], axis=-1)
                             for k in keys], axis=-2)  # (..., Tq, T, h)
        if tq > 1:
            allowed = (np.arange(t)[None, :] <= np.arange(t - tq, t)[:, None])
            w = jnp.where(allowed[:, :, None], w, jnp.finfo(w.dtype).min)
        w = jax.nn.softmax(w, axis=-2).astype(q.dtype)
        out, start = 0, 0
        for v in values:
            n = v.shape[-3]
            out = out + jnp.sum(w[..., start:start + n, :, None] * v[..., None, :, :, :], axis=-3)
            start += n
        return self.out(out)


class FastBlock(_BlockBase):
    """The block of `shortcuts=True`; same parameters as `Block`. Returns (output, first).

    `x` (..., T, d): the block's input. `last_only`: compute the output at the last position
    only, shape (..., 1, d). With `tokens` (..., T) the block uses that position 0 attends to
    itself only, so in every block its value is a function of its token alone: `first` (V, d)
    is the block's input at position 0 for every token of the vocabulary
    (x[..., 0, :] == first[tokens[..., 0]]); position 0's Q/K/V and output are computed on
    those V rows and gathered, and the returned `first` is the next block's. `table`
    (V, T, d), for the first block: its input for every token at every position (embedding +
    position), so Q/K/V are projected on the table's rows and gathered. `train`: a training
    call (dropout, `tokens` None)."""

    @nn.compact
    def __call__(self, x, tokens=None, first=None, table=None, last_only=False, train=False):
        attn = Attention(self.d_model, self.n_heads, self.use_bias, self.dtype,
                         self.kernel_init, name="attn")
        if tokens is None:
            q = attn.query(x[..., -1:, :] if last_only else x)
            k, v = attn.key(x), attn.value(x)
            n = x.shape[-2]
            x = x[..., -1:, :] if last_only else x
            return self._after_attention(x + attn(q, (k,), (v,)), train, n), None
        t = x.shape[-2]
        tok0, rest = tokens[..., :1], x[..., 1:, :]
        if table is not None:
            qt, kt, vt = attn.query(table), attn.key(table), attn.value(table)
            q0, k0, v0 = qt[:, 0], kt[:, 0], vt[:, 0]
            at = (tokens[..., -1:], t - 1) if last_only else (tokens[..., 1:], jnp.arange(1, t))
            q = linear.take_rows(qt, at)
            k = linear.take_rows(kt, (tokens[..., 1:], jnp.arange(1, t)))
            v = linear.take_rows(vt, (tokens[..., 1:], jnp.arange(1, t)))
        else:
            q0, k0, v0 = attn.query(first), attn.key(first), attn.value(first)
            q = attn.query(rest[..., -1:, :] if last_only else rest)
            k, v = attn.key(rest), attn.value(rest)
        # position 0's, then positions 1..T-1's
        k, v = (linear.take_rows(k0, tok0), k), (linear.take_rows(v0, tok0), v)
        if last_only:
            return self._after_attention(x[..., -1:, :] + attn(q, k, v)), None
        # one pass after the attention for the V rows of position 0 and the rows of 1..T-1
        first = first + attn(q0[:, None], (k0[:, None],), (v0[:, None],))[:, 0]
        rest = rest + attn(q, k, v)
        d, n = first.shape[-1], first.shape[0]
        both = self._after_attention(jnp.concatenate([first, rest.reshape(-1, d)]))
        first, rest = both[:n], both[n:].reshape(rest.shape)
        return jnp.concatenate([linear.take_rows(first, tok0), rest], axis=-2), first


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
    weight_init: str = "default"  # ModelConfig.weight_init: default | nanda
    dropout: float = 0.0  # ModelConfig.dropout: rate on the FFN outputs in training calls

    def _inits(self) -> tuple:
        """(embedding, learned positions, block kernels, unembedding) initializers."""
        if self.weight_init == "nanda":  # every weight N(0, 1/d_model), the read-out N(0, 1/V)
            w = nn.initializers.normal(1 / math.sqrt(self.d_model))
            return w, w, w, nn.initializers.normal(1 / math.sqrt(self.vocab_size))
        return (nn.linear.default_embed_init, nn.initializers.normal(0.02), None,
                nn.initializers.lecun_normal())

    @nn.compact
    def __call__(self, tokens, train: bool = False):
        """tokens: (..., T) int -> logits (..., vocab) at the last position. `train`: a
        training call, with dropout (a "dropout" rng) when `dropout` > 0."""
        train = bool(train) and self.dropout > 0
        embed_init, pos_init, kernel_init, unembed_init = self._inits()
        # gathered in float32, cast after (`linear.embed_rows`)
        embed = nn.Embed(self.vocab_size, self.d_model, embedding_init=embed_init,
                         name="embed")
        if self.positions == "learned":
            pe = self.param("pos_embed", pos_init, (self.max_len, self.d_model))
        else:
            pe = jnp.asarray(sinusoidal_positions(self.max_len, self.d_model))
        t = tokens.shape[-1]
        pe = pe[:t] if self.dtype is None else pe[:t].astype(self.dtype)
        x = linear.embed_rows(embed, tokens, self.dtype) + pe
        args = (self.d_model, self.n_heads, self.d_ff, self.use_bias, self.layer_norm,
                self.dtype, kernel_init, self.dropout)
        if not self.shortcuts:
            for i in range(self.n_layers):
                x = Block(*args, name=f"block_{i}")(x, train)
            last = x[..., -1, :]
        else:
            # table of every (token, position) sum, when it is smaller than the batch's rows
            # (not under dropout: position 0's values then differ between examples)
            rows = math.prod(tokens.shape[:-1])
            by_token = self.vocab_size < rows and t > 1 and not train
            table = first = None
            if by_token:  # (V, T, d)
                vocab = linear.embed_rows(embed, jnp.arange(self.vocab_size), self.dtype)
                table = vocab[:, None, :] + pe[None]
                first = table[:, 0]
            for i in range(self.n_layers):
                x, first = FastBlock(*args, name=f"block_{i}")(
                    x, tokens if by_token else None, first, table if i == 0 else None,
                    last_only=i == self.n_layers - 1, train=train)
            last = x[..., -1, :]
        logits = linear.Dense(self.vocab_size, use_bias=False, dtype=self.dtype,
                              kernel_init=unembed_init, name="unembed")(last)
        return to_out(logits, self.dtype)

"""The decoder-only transformer of Power et al. (2022), as in openai/grok's code.

Token embedding + fixed sinusoidal positions, `n_layers` post-LayerNorm blocks
(x = LN(x + Attn(x)); x = LN(x + FFN(x))), causal multi-head attention, a ReLU FFN of width
`d_ff` (4 x d_model), no biases, and an untied unembedding that maps the last position to
logits over the whole vocabulary.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np


def sinusoidal_positions(max_len: int, d_model: int) -> np.ndarray:
    pos = np.arange(max_len)[:, None]
    i = np.arange(0, d_model, 2)[None, :]
    angle = pos / np.power(10000.0, i / d_model)
    pe = np.zeros((max_len, d_model), np.float32)
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle[:, : d_model // 2])
    return pe


class Block(nn.Module):
    d_model: int
    n_heads: int
    d_ff: int
    use_bias: bool

    @nn.compact
    def __call__(self, x):
        mask = nn.make_causal_mask(jnp.ones(x.shape[:-1], jnp.int32))
        a = nn.MultiHeadDotProductAttention(
            num_heads=self.n_heads, qkv_features=self.d_model, out_features=self.d_model,
            use_bias=self.use_bias, name="attn")(x, x, mask=mask)
        x = nn.LayerNorm(use_bias=self.use_bias, name="attn_norm")(x + a)
        h = nn.Dense(self.d_ff, use_bias=self.use_bias, name="ffn_in")(x)
        h = nn.Dense(self.d_model, use_bias=self.use_bias, name="ffn_out")(nn.relu(h))
        return nn.LayerNorm(use_bias=self.use_bias, name="ffn_norm")(x + h)


class Transformer(nn.Module):
    vocab_size: int
    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_ff: int = 512
    max_len: int = 8
    use_bias: bool = False

    @nn.compact
    def __call__(self, tokens):
        """tokens: (..., T) int -> logits (..., vocab) at the last position."""
        x = nn.Embed(self.vocab_size, self.d_model, name="embed")(tokens)
        pe = sinusoidal_positions(self.max_len, self.d_model)
        x = x + jnp.asarray(pe[: tokens.shape[-1]])
        for i in range(self.n_layers):
            x = Block(self.d_model, self.n_heads, self.d_ff, self.use_bias, name=f"block_{i}")(x)
        return nn.Dense(self.vocab_size, use_bias=False, name="unembed")(x[..., -1, :])

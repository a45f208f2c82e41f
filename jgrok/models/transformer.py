"""The decoder-only transformer of Power et al. (2022), as in openai/grok's code.

Token embedding + fixed sinusoidal positions, `n_layers` post-LayerNorm blocks
(x = LN(x + Attn(x)); x = LN(x + FFN(x))), causal multi-head attention, a ReLU FFN of width
`d_ff` (4 x d_model), no biases, and an untied unembedding that maps the last position to
logits over the whole vocabulary.

With `layer_norm=False` and `positions="learned"` the same class is the 1-layer model of Nanda
et al. (2023): residual blocks x = x + Attn(x); x = x + FFN(x), learned position embeddings.
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
    layer_norm: bool = True

    @nn.compact
    def __call__(self, x):
        mask = nn.make_causal_mask(jnp.ones(x.shape[:-1], jnp.int32))
        a = nn.MultiHeadDotProductAttention(
            num_heads=self.n_heads, qkv_features=self.d_model, out_features=self.d_model,
            use_bias=self.use_bias, name="attn")(x, x, mask=mask)
        x = x + a
        if self.layer_norm:
            x = nn.LayerNorm(use_bias=self.use_bias, name="attn_norm")(x)
        h = nn.Dense(self.d_ff, use_bias=self.use_bias, name="ffn_in")(x)
        x = x + nn.Dense(self.d_model, use_bias=self.use_bias, name="ffn_out")(nn.relu(h))
        if self.layer_norm:
            x = nn.LayerNorm(use_bias=self.use_bias, name="ffn_norm")(x)
        return x


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

    @nn.compact
    def __call__(self, tokens):
        """tokens: (..., T) int -> logits (..., vocab) at the last position."""
        x = nn.Embed(self.vocab_size, self.d_model, name="embed")(tokens)
        if self.positions == "learned":
            pe = self.param("pos_embed", nn.initializers.normal(0.02),
                            (self.max_len, self.d_model))
        else:
            pe = jnp.asarray(sinusoidal_positions(self.max_len, self.d_model))
        x = x + pe[: tokens.shape[-1]]
        for i in range(self.n_layers):
            x = Block(self.d_model, self.n_heads, self.d_ff, self.use_bias, self.layer_norm,
                      name=f"block_{i}")(x)
        return nn.Dense(self.vocab_size, use_bias=False, name="unembed")(x[..., -1, :])

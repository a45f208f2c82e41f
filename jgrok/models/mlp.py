"""MLPs. `OperandMLP` for the algorithmic tasks: embeddings (or one-hot codes) of x and y,
concatenated, then `depth` hidden layers of `width` units and a linear read-out over the
vocabulary. `DenseMLP` for feature vectors (MNIST images, Wine Quality features).

`OperandMLP(shortcuts=True)` (the default) computes the first layer on the vocabulary instead of
the batch: concat(E[x], E[y]) @ W + b = (E @ W[:e])[x] + (E @ W[e:])[y] + b (one-hot inputs:
W[:V][x] + W[V:][y] + b), exact in real arithmetic, with the same parameters as the plain
computation (`shortcuts=False`), so checkpoints and initial weights are unchanged. It is used
when the vocabulary is smaller than the batch."""

from __future__ import annotations

import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jgrok.models import linear


def to_out(logits, dtype):
    """Outputs (logits) leave a model in float32 when it computes in a lower precision
    (`dtype`); with `dtype=None` they keep the parameters' dtype."""
    return logits if dtype is None else logits.astype(jnp.promote_types(dtype, jnp.float32))


ACTIVATIONS = {
    "relu": nn.relu,
    "gelu": nn.gelu,
    "quadratic": lambda x: x * x,
    "sigmoid": nn.sigmoid,
    "tanh": jnp.tanh,
}


class PairDense(nn.Module):
    """`nn.Dense(features)` applied to concat(table[x], table[y]), computed as
    (table @ W[:n])[x] + (table @ W[n:])[y] + b; `table=None` is the identity (one-hot
    inputs). Same parameters (names, shapes, initializers) as the `nn.Dense` it replaces.
    Returns the pre-activation (..., features)."""

    features: int
    use_bias: bool = True
    dtype: Optional[Any] = None

    @nn.compact
    def __call__(self, table, n_in: int, x_tok, y_tok):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (2 * n_in, self.features),
                            jnp.float32)
        bias = (self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
                if self.use_bias else None)
        table, kernel, bias = nn.dtypes.promote_dtype(table, kernel, bias, dtype=self.dtype)
        if table is None:
            ta, tb = kernel[:n_in], kernel[n_in:]
        else:
            ta, tb = linear.matmul(table, kernel[:n_in]), linear.matmul(table, kernel[n_in:])
        h = linear.take_rows(ta, x_tok) + linear.take_rows(tb, y_tok)
        return h if bias is None else h + bias


class OperandMLP(nn.Module):
    """Input tokens (..., 4) = [x, op, y, =]; only x and y are read."""

    vocab_size: int
    width: int = 256
    depth: int = 2
    activation: str = "relu"
    input_mode: str = "embed"  # embed | onehot
    d_embed: int = 128
    use_bias: bool = True
    shortcuts: bool = True  # first layer on the vocabulary table (module docstring); exact
    dtype: Optional[Any] = None  # computation dtype (None: the parameters'; they stay float32)

    @nn.compact
    def __call__(self, tokens):
        x_tok, y_tok = tokens[..., 0], tokens[..., 2]
        act = ACTIVATIONS[self.activation]
        if self.shortcuts and self.depth > 0 and self.vocab_size < math.prod(x_tok.shape):
            if self.input_mode == "onehot":
                table, n_in = None, self.vocab_size
            else:
                emb = nn.Embed(self.vocab_size, self.d_embed, name="embed")
                table = linear.embed_rows(emb, jnp.arange(self.vocab_size), self.dtype)
                n_in = self.d_embed
            h = act(PairDense(self.width, self.use_bias, self.dtype, name="hidden_0")(
                table, n_in, x_tok, y_tok))
            for i in range(1, self.depth):
                h = act(linear.Dense(self.width, use_bias=self.use_bias, dtype=self.dtype,
                                     name=f"hidden_{i}")(h))
            return to_out(linear.Dense(self.vocab_size, use_bias=self.use_bias,
                                       dtype=self.dtype, name="unembed")(h), self.dtype)
        if self.input_mode == "onehot":
            h = jnp.concatenate([jax.nn.one_hot(x_tok, self.vocab_size),
                                 jax.nn.one_hot(y_tok, self.vocab_size)], axis=-1)
        else:
            emb = nn.Embed(self.vocab_size, self.d_embed, name="embed")
            h = jnp.concatenate([linear.embed_rows(emb, x_tok, self.dtype),
                                 linear.embed_rows(emb, y_tok, self.dtype)], axis=-1)
        for i in range(self.depth):
            h = act(linear.Dense(self.width, use_bias=self.use_bias, dtype=self.dtype,
                                 name=f"hidden_{i}")(h))
        return to_out(linear.Dense(self.vocab_size, use_bias=self.use_bias, dtype=self.dtype,
                                   name="unembed")(h), self.dtype)


class DenseMLP(nn.Module):
    """Flattened float inputs -> `depth` hidden layers -> `n_out` outputs (linear; an output
    activation, if any, is applied by the training loop). Omnigrok's MNIST model is width 200,
    depth 2 hidden layers (three Linear layers), ReLU."""

    n_out: int
    width: int = 200
    depth: int = 2
    activation: str = "relu"
    weight_init: str = "default"  # default (Flax) | torch (nn.Linear's uniform weights and biases)
    dtype: Optional[Any] = None  # computation dtype (None: the parameters'; they stay float32)

    def _dense(self, features: int, fan_in: int, name: str) -> nn.Dense:
        if self.weight_init == "default":
            return linear.Dense(features, dtype=self.dtype, name=name)
        bound = 1.0 / math.sqrt(fan_in)

        def uniform(key, shape, dtype=jnp.float32):
            return jax.random.uniform(key, shape, dtype, -bound, bound)

        return linear.Dense(features, kernel_init=uniform, bias_init=uniform, dtype=self.dtype,
                            name=name)

    @nn.compact
    def __call__(self, x):
        h = x.reshape(x.shape[: x.ndim - 1] + (-1,)) if x.ndim > 1 else x
        act = ACTIVATIONS[self.activation]
        for i in range(self.depth):
            h = act(self._dense(self.width, h.shape[-1], f"hidden_{i}")(h))
        return to_out(self._dense(self.n_out, h.shape[-1], "unembed")(h), self.dtype)

"""MLPs. `OperandMLP` for the algorithmic tasks: embeddings (or one-hot codes) of x and y,
concatenated, then `depth` hidden layers of `width` units and a linear read-out over the
vocabulary. `DenseMLP` for feature vectors (MNIST images, Wine Quality features)."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {
    "relu": nn.relu,
    "gelu": nn.gelu,
    "quadratic": lambda x: x * x,
    "sigmoid": nn.sigmoid,
    "tanh": jnp.tanh,
}


class OperandMLP(nn.Module):
    """Input tokens (..., 4) = [x, op, y, =]; only x and y are read."""

    vocab_size: int
    width: int = 256
    depth: int = 2
    activation: str = "relu"
    input_mode: str = "embed"  # embed | onehot
    d_embed: int = 128
    use_bias: bool = True

    @nn.compact
    def __call__(self, tokens):
        x_tok, y_tok = tokens[..., 0], tokens[..., 2]
        if self.input_mode == "onehot":
            h = jnp.concatenate([jax.nn.one_hot(x_tok, self.vocab_size),
                                 jax.nn.one_hot(y_tok, self.vocab_size)], axis=-1)
        else:
            emb = nn.Embed(self.vocab_size, self.d_embed, name="embed")
            h = jnp.concatenate([emb(x_tok), emb(y_tok)], axis=-1)
        act = ACTIVATIONS[self.activation]
        for i in range(self.depth):
            h = act(nn.Dense(self.width, use_bias=self.use_bias, name=f"hidden_{i}")(h))
        return nn.Dense(self.vocab_size, use_bias=self.use_bias, name="unembed")(h)


class DenseMLP(nn.Module):
    """Flattened float inputs -> `depth` hidden layers -> `n_out` outputs (linear; an output
    activation, if any, is applied by the training loop). Omnigrok's MNIST model is width 200,
    depth 2 hidden layers (three Linear layers), ReLU."""

    n_out: int
    width: int = 200
    depth: int = 2
    activation: str = "relu"
    weight_init: str = "default"  # default (Flax) | torch (nn.Linear's uniform weights and biases)

    def _dense(self, features: int, fan_in: int, name: str) -> nn.Dense:
        if self.weight_init == "default":
            return nn.Dense(features, name=name)
        bound = 1.0 / math.sqrt(fan_in)

        def uniform(key, shape, dtype=jnp.float32):
            return jax.random.uniform(key, shape, dtype, -bound, bound)

        return nn.Dense(features, kernel_init=uniform, bias_init=uniform, name=name)

    @nn.compact
    def __call__(self, x):
        h = x.reshape(x.shape[: x.ndim - 1] + (-1,)) if x.ndim > 1 else x
        act = ACTIVATIONS[self.activation]
        for i in range(self.depth):
            h = act(self._dense(self.width, h.shape[-1], f"hidden_{i}")(h))
        return self._dense(self.n_out, h.shape[-1], "unembed")(h)

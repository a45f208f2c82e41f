"""Model construction from a `ModelConfig`."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jgrok.config import ModelConfig
from jgrok.models.mlp import DenseMLP, OperandMLP
from jgrok.models.transformer import Transformer


def build_model(cfg: ModelConfig, vocab_size: int) -> nn.Module:
    cfg.validate()
    # float32 computation leaves the dtype to the parameters (float64 under jax x64 in tests)
    dtype = jnp.bfloat16 if cfg.compute_dtype == "bfloat16" else None
    if cfg.kind == "transformer":
        return Transformer(vocab_size=vocab_size, n_layers=cfg.n_layers, d_model=cfg.d_model,
                           n_heads=cfg.n_heads, d_ff=cfg.d_ff or 4 * cfg.d_model,
                           max_len=cfg.max_len, use_bias=cfg.use_bias,
                           layer_norm=cfg.layer_norm, positions=cfg.positions,
                           shortcuts=cfg.shortcuts, dtype=dtype,
                           weight_init=cfg.weight_init, dropout=cfg.dropout)
    if cfg.kind == "dense":
        return DenseMLP(n_out=vocab_size, width=cfg.mlp_width, depth=cfg.mlp_depth,
                        activation=cfg.mlp_activation, weight_init=cfg.weight_init, dtype=dtype)
    return OperandMLP(vocab_size=vocab_size, width=cfg.mlp_width, depth=cfg.mlp_depth,
                      activation=cfg.mlp_activation, input_mode=cfg.mlp_input,
                      d_embed=cfg.d_model, shortcuts=cfg.shortcuts, dtype=dtype)


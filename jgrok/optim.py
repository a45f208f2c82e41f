"""optax optimizers. Learning rate and weight decay are per-run hyperparameters held in the
optimizer state (`optax.inject_hyperparams`), so runs with different values share one compiled
computation under `jax.vmap`."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jgrok.config import OptimConfig


class DecayToInitState(NamedTuple):
    init_params: optax.Params


def add_decayed_weights_to_init(weight_decay) -> optax.GradientTransformation:
    """Adds `weight_decay * (params - params_at_init)`: decay towards the initialisation."""

    def init_fn(params):
        return DecayToInitState(init_params=jax.tree.map(jnp.asarray, params))

    def update_fn(updates, state, params):
        updates = jax.tree.map(lambda g, p, p0: g + weight_decay * (p - p0), updates, params,
                               state.init_params)
        return updates, state

    return optax.GradientTransformation(init_fn, update_fn)


def lr_multiplier(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """Linear warm-up from 0 to 1 over `warmup_steps`, then constant or cosine to 0."""
    warm = max(cfg.warmup_steps, 0)
    if cfg.schedule == "cosine":
        after = optax.cosine_decay_schedule(1.0, max(total_steps - warm, 1))
    else:
        after = optax.constant_schedule(1.0)
    if warm == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, 1.0, warm), after], [warm])


def make_optimizer(cfg: OptimConfig, total_steps: int, learning_rate=1e-3, weight_decay=1.0
                   ) -> optax.GradientTransformation:
    """The optimizer for one run. `learning_rate` and `weight_decay` become arrays in the state
    (`state.hyperparams`), so each vmapped run carries its own values."""
    cfg.validate()
    schedule = lr_multiplier(cfg, total_steps)

    def build(learning_rate, weight_decay):
        if cfg.name == "sgd":
            core = optax.trace(decay=cfg.momentum) if cfg.momentum else optax.identity()
        else:
            core = optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
        parts = [core]
        if cfg.name == "adam":
            # coupled L2 (classic Adam + weight decay): decay enters before the adaptive scaling
            decay = (add_decayed_weights_to_init(weight_decay) if cfg.decay_to_init
                     else optax.add_decayed_weights(weight_decay))
            parts = [decay, core]
        else:
            parts.append(add_decayed_weights_to_init(weight_decay) if cfg.decay_to_init
                         else optax.add_decayed_weights(weight_decay))
        parts += [optax.scale_by_schedule(schedule), optax.scale(-1.0 * learning_rate)]
        return optax.chain(*parts)

    return optax.inject_hyperparams(build)(learning_rate=learning_rate, weight_decay=weight_decay)

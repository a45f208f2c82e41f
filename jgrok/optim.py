"""optax optimizers. Learning rate and weight decay are per-run hyperparameters held in the
optimizer state (`optax.inject_hyperparams`), so runs with different values share one compiled
computation under `jax.vmap`; so are Grokfast's lambda and alpha (`grokfast_ema`,
`grokfast_ma`), whose filter is the first transformation of the chain, before the optimizer."""

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


def _amplified(g, filtered, lamb, on=True):
    """g + lamb * filtered where `on` and lamb != 0, else g itself: with lamb = 0 the filter
    hands the optimizer its gradients bit for bit (signed zeros and all)."""
    lamb = jnp.asarray(lamb, g.dtype)
    return jnp.where(jnp.logical_and(on, lamb != 0), g + lamb * filtered, g)


class GrokfastEmaState(NamedTuple):
    count: jax.Array  # int32 scalar: gradients seen
    ema: optax.Updates  # the moving average of the gradients (zeros before the first)


def grokfast_ema(lamb, alpha) -> optax.GradientTransformation:
    """Grokfast-EMA (Lee et al. 2024, `gradfilter_ema`): ema <- alpha * ema + (1 - alpha) * g,
    then g <- g + lamb * ema. The first gradient starts the average (ema_0 = g_1, as the
    paper's code does), so ema_1 = alpha * g_1 + (1 - alpha) * g_1. `lamb` and `alpha` may
    be traced (per-run values under `vmap`); lamb = 0 returns the gradients unchanged."""

    def init_fn(params):
        return GrokfastEmaState(count=jnp.zeros((), jnp.int32),
                                ema=jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        del params
        first = state.count == 0
        ema = jax.tree.map(
            lambda m, g: jnp.where(first, g, m) * jnp.asarray(alpha, g.dtype)
            + g * (1 - jnp.asarray(alpha, g.dtype)), state.ema, updates)
        updates = jax.tree.map(lambda g, m: _amplified(g, m, lamb), updates, ema)
        return updates, GrokfastEmaState(count=state.count + 1, ema=ema)

    return optax.GradientTransformation(init_fn, update_fn)


class GrokfastMaState(NamedTuple):
    count: jax.Array  # int32 scalar: gradients seen
    window: optax.Updates  # each leaf (window, *shape): the last gradients, a ring buffer


def grokfast_ma(lamb, window: int, warmup: bool = True) -> optax.GradientTransformation:
    """Grokfast-MA (Lee et al. 2024, `gradfilter_ma` with its mean filter): the last `window`
    gradients, the current one included, are kept; g <- g + lamb * their mean. With `warmup`
    (the paper's default) only once `window` gradients are in, before that g is unchanged;
    without, the mean of those seen so far. `window` is static (it shapes the state: `window`
    copies of the parameters); `lamb` may be traced. lamb = 0 returns the gradients
    unchanged."""
    window = int(window)

    def init_fn(params):
        return GrokfastMaState(count=jnp.zeros((), jnp.int32),
                               window=jax.tree.map(
                                   lambda p: jnp.zeros((window,) + jnp.shape(p),
                                                       jnp.asarray(p).dtype), params))

    def update_fn(updates, state, params=None):
        del params
        slot = state.count % window
        seen = jnp.minimum(state.count + 1, window)
        on = (seen == window) if warmup else jnp.ones((), bool)

        def one(g, buf):
            buf = jax.lax.dynamic_update_index_in_dim(buf, g, slot, 0)
            mean = jnp.sum(buf, axis=0) / seen.astype(g.dtype)  # slots not yet filled are 0
            return _amplified(g, mean, lamb, on), buf

        out = jax.tree.map(one, updates, state.window)
        is_pair = lambda x: isinstance(x, tuple)  # noqa: E731
        updates = jax.tree.map(lambda o: o[0], out, is_leaf=is_pair)
        buffers = jax.tree.map(lambda o: o[1], out, is_leaf=is_pair)
        return updates, GrokfastMaState(count=state.count + 1, window=buffers)

    return optax.GradientTransformation(init_fn, update_fn)


def grokfast_filter(cfg: OptimConfig, lamb, alpha) -> optax.GradientTransformation:
    """The Grokfast filter of `cfg.grokfast` ('ema' or 'ma')."""
    if cfg.grokfast == "ema":
        return grokfast_ema(lamb, alpha)
    return grokfast_ma(lamb, cfg.grokfast_window, cfg.grokfast_warmup)


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


def make_optimizer(cfg: OptimConfig, total_steps: int, learning_rate=1e-3, weight_decay=1.0,
                   grokfast_lamb=0.0, grokfast_alpha=0.98) -> optax.GradientTransformation:
    """The optimizer for one run. `learning_rate` and `weight_decay` become arrays in the state
    (`state.hyperparams`), so each vmapped run carries its own values; with a Grokfast filter
    (`cfg.grokfast`) also `grokfast_lamb` (and, for the EMA, `grokfast_alpha`), and the
    filter comes first in the chain: it sees the raw gradients, as in the paper, where it
    rewrites `p.grad` before `optimizer.step()` (so before the Adam moments and before Adam's
    coupled weight decay). Without a filter the chain and its state are as they were before
    Grokfast was added (older checkpoints load)."""
    cfg.validate()
    schedule = lr_multiplier(cfg, total_steps)

    def chain(learning_rate, weight_decay, grokfast_lamb=None, grokfast_alpha=None):
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
        if cfg.grokfast != "none":
            parts.insert(0, grokfast_filter(cfg, grokfast_lamb, grokfast_alpha))
        return optax.chain(*parts)

    # (inject_hyperparams makes every argument of the factory a hyperparameter in the state)
    def build(learning_rate, weight_decay):
        return chain(learning_rate, weight_decay)

    def build_ma(learning_rate, weight_decay, grokfast_lamb):
        return chain(learning_rate, weight_decay, grokfast_lamb)

    def build_ema(learning_rate, weight_decay, grokfast_lamb, grokfast_alpha):
        return chain(learning_rate, weight_decay, grokfast_lamb, grokfast_alpha)

    hyper = dict(learning_rate=learning_rate, weight_decay=weight_decay)
    if cfg.grokfast == "none":
        return optax.inject_hyperparams(build)(**hyper)
    if cfg.grokfast == "ma":
        return optax.inject_hyperparams(build_ma)(**hyper, grokfast_lamb=grokfast_lamb)
    return optax.inject_hyperparams(build_ema)(**hyper, grokfast_lamb=grokfast_lamb,
                                               grokfast_alpha=grokfast_alpha)

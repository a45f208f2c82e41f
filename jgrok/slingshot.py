"""Per-step logging for the slingshot effect (Thilak et al. 2022).

The sweep evaluates every ``eval_every`` steps; a slingshot spike lasts tens of steps, so it is
easily missed. :func:`advance_logged` advances every run of a sweep ``n`` steps inside ONE
jitted ``lax.scan`` (vmapped over runs) and records, at every step, the batch loss that
``jgrok.train.train_step`` returns and the norm of the last layer (``unembed``) after the update.
The host only sees the two ``(n_runs, n)`` arrays; the final state is the one
``jgrok.sweep.advance`` would reach in the same ``n`` steps.

Record convention: ``losses[:, t]`` is the loss of the batch of step ``s0 + t`` at the weights
BEFORE that step's update (``s0 = state.step`` on entry); ``norms[:, t]`` is the last-layer norm
AFTER it, i.e. at step ``s0 + t + 1``.

Two switches against the numerical side of the slingshot:

* a larger Adam epsilon (``OptimConfig.eps``): set it in the config; nothing here is needed.
* ``float64_loss=True``: the logits are cast to float64 before the loss, so the cross-entropy's
  log-sum-exp (and its gradient, the softmax) are computed in double precision; the model, the
  gradients reaching the weights, and the optimizer stay in float32. This runs under
  ``jax.enable_x64(True)`` (only for this computation) and casts every leaf of the new state
  back to its input dtype at each step. Batches are drawn with float64 uniforms under x64, so
  mini-batch runs see different batches than the float32 run; full-batch runs see the same
  training rows (in another order).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jgrok import train

__all__ = ["Float64Logits", "scan_steps", "advance_logged"]


@dataclasses.dataclass(frozen=True)
class Float64Logits:
    """Stands in for ``problem.model``: the wrapped model's outputs, cast to float64 (a no-op
    cast to float32 unless x64 is enabled)."""

    inner: Any

    def apply(self, variables, *args, **kwargs):
        return self.inner.apply(variables, *args, **kwargs).astype(jnp.float64)

    def init(self, *args, **kwargs):
        return self.inner.init(*args, **kwargs)


def scan_steps(problem: train.Problem, inputs, state: train.RunState, data: train.RunData,
               n_steps: int):
    """``n_steps`` (static) steps of ONE run with ``lax.scan``. Returns
    ``(state, (losses (n,), last_layer_norms (n,)))``."""

    def body(s, _):
        new, loss = train.train_step(problem, inputs, s, data)
        # keep the carry's dtypes (float64 hyperparameter arithmetic under x64 would promote)
        new = jax.tree.map(lambda a, b: a.astype(b.dtype), new, s)
        return new, (loss.astype(jnp.float32),
                     train.last_layer_norm(new.params).astype(jnp.float32))

    return jax.lax.scan(body, state, None, length=n_steps)


@functools.lru_cache(maxsize=16)
def _compiled(problem: train.Problem, n_steps: int, options: tuple = ()):
    one = functools.partial(scan_steps, problem, n_steps=n_steps)
    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0)), donate_argnums=(1,),
                   compiler_options=dict(options))


def advance_logged(engine, state: train.RunState, n_steps: int, float64_loss: bool = False):
    """All runs of ``engine`` take ``n_steps`` steps; returns ``(state, losses, norms)`` with
    ``losses``/``norms`` host float arrays ``(n_runs, n_steps)`` (record convention in the module
    docstring). The input state's buffers are donated. Each distinct ``n_steps`` compiles once.
    """
    n_steps = int(n_steps)
    if n_steps <= 0:
        empty = np.zeros((engine.n_runs, 0), np.float32)
        return state, empty, empty
    problem = engine.problem
    ctx = contextlib.nullcontext()
    if float64_loss:
        problem = dataclasses.replace(problem, model=Float64Logits(problem.model))
        ctx = jax.enable_x64(True)
    with ctx:
        state, (losses, norms) = _compiled(problem, n_steps, engine.xla_options)(
            engine.inputs, state, engine.run_data)
        losses, norms = jax.device_get((losses, norms))
    return (state, np.asarray(losses)[: engine.n_runs], np.asarray(norms)[: engine.n_runs])

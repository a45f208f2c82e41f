"""One run: its state, its initialisation, one training step and its evaluation.

Everything here is written for a single run and is pure; `jgrok.sweep` turns it into R runs with
`jax.vmap`. A run sees the dataset's full arrays (shared by all runs) plus its own `RunData`:
which rows are its training and validation rows, its (possibly noisy) labels and its batch size.
Different training fractions therefore batch together: a run's training set is a mask, and a
batch is drawn by taking the `B` smallest of uniform draws over its training rows (sampling
without replacement), of which the first `batch_size` count.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from jgrok import losses
from jgrok.schema import METRIC_COLUMNS


class RunState(flax.struct.PyTreeNode):
    params: Any
    opt_state: Any
    step: jax.Array  # int32 scalar
    key: jax.Array  # uint32[2], data-order key of this run (from its split seed)
    diverged: jax.Array  # bool scalar: loss became NaN/inf; the run is frozen from then on
    diverged_step: jax.Array  # int32 scalar, -1 while healthy


class RunData(flax.struct.PyTreeNode):
    """Per-run view of the shared dataset (arrays over the N rows of the dataset)."""

    train_mask: jax.Array  # bool (N,)
    val_mask: jax.Array  # bool (N,)
    labels: jax.Array  # int32 (N,): training labels (label noise applied on training rows)
    batch_size: jax.Array  # int32 scalar
    n_train: jax.Array  # int32 scalar


@dataclasses.dataclass(frozen=True)
class Problem:
    """What one step needs besides state and data; hashable closure for `jax.jit`."""

    model: nn.Module
    tx: optax.GradientTransformation
    loss: str  # ce | mse
    n_classes: int
    max_batch: int  # B: static batch buffer size (max over runs)
    eval_rows: int
    constant_norm: bool = False  # rescale weights to their initial norm after every step
    output_activation: str = "none"  # none | sigmoid | softmax, applied to the model output
    matmul_precision: str = "highest"  # ModelConfig.matmul_precision
    loss_precision: str = "float32"  # TrainConfig.loss_precision
    dropout: float = 0.0  # ModelConfig.dropout: the model's dropout rate (training steps only)
    weight_noise: float = 0.0  # ModelConfig.weight_noise: std of the training steps' noise


#: `fold_in` constants of the random streams a training step draws besides its batch
DROPOUT_STREAM, WEIGHT_NOISE_STREAM = 0x64726F70, 0x6E6F6973


def model_output(problem: Problem, params, x, train_key=None):
    """The model's outputs. `train_key`: a training step's key, which draws its dropout
    masks (with `problem.dropout`); None (evaluation) is deterministic."""
    # the precision is read when the matmuls are traced (inside jit), forward and backward
    with jax.default_matmul_precision(problem.matmul_precision):
        if problem.dropout and train_key is not None:
            out = problem.model.apply({"params": params}, x, train=True,
                                      rngs=dict(dropout=train_key))
        else:
            out = problem.model.apply({"params": params}, x)
    if problem.output_activation == "sigmoid":
        return jax.nn.sigmoid(out)
    if problem.output_activation == "softmax":
        return jax.nn.softmax(out, axis=-1)
    return out


def per_example_loss(logits, labels, loss: str, n_classes: int, precision: str = "float32"):
    """Cross-entropy of the outputs taken as logits (`precision`: `TrainConfig.loss_precision`),
    or MSE against one-hot targets (mean over classes, as torch's MSELoss)."""
    if loss == "mse":
        onehot = jax.nn.one_hot(labels, n_classes, dtype=logits.dtype)
        return jnp.mean((logits[..., :n_classes] - onehot) ** 2, axis=-1)
    if precision == "high":
        return losses.cross_entropy_high_precision(logits, labels)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def global_norm(tree) -> jax.Array:
    return optax.tree.norm(tree)


def all_finite(tree) -> jax.Array:
    """Whether every value of `tree` is finite (no NaN, no +-inf): the divergence rule's test
    of the weights. It tests the values, not their global norm: a norm past float32's range
    (1.8e19) with every value finite is no divergence, and such an overflow need not persist
    from step to step, so a check once per call (`train_wave`) could not reproduce it."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def last_layer_norm(params) -> jax.Array:
    return optax.tree.norm(params["unembed"])


def init_run(problem: Problem, sample_input, seed, split_seed, lr, weight_decay, init_scale,
             grokfast_lamb=0.0, grokfast_alpha=0.98) -> RunState:
    """Initial state of one run. `seed` drives the weights, `split_seed` the data order (and
    the training steps' dropout and weight noise); every parameter, biases included, is
    multiplied by `init_scale` (Omnigrok's alpha). The Grokfast values are set where the
    optimizer has a filter (`optim.make_optimizer`)."""
    key = jax.random.PRNGKey(seed)
    params = problem.model.init(key, sample_input)["params"]
    params = jax.tree.map(lambda p: p * jnp.asarray(init_scale).astype(p.dtype), params)
    opt_state = problem.tx.init(params)
    hp = opt_state.hyperparams
    for name, value in (("learning_rate", lr), ("weight_decay", weight_decay),
                        ("grokfast_lamb", grokfast_lamb), ("grokfast_alpha", grokfast_alpha)):
        if name in hp:
            hp[name] = jnp.asarray(value, hp[name].dtype)
    data_key = jax.random.fold_in(jax.random.PRNGKey(split_seed), 0x6A67)
    return RunState(params=params, opt_state=opt_state, step=jnp.zeros((), jnp.int32),
                    key=data_key, diverged=jnp.zeros((), bool),
                    diverged_step=jnp.full((), -1, jnp.int32))


def sample_batch(key, data: RunData, max_batch: int):
    """Indices (B,) of a batch drawn without replacement from the run's training rows, and
    per-example weights that sum to 1 over the first `batch_size` of them."""
    u = jax.random.uniform(key, data.train_mask.shape)
    u = jnp.where(data.train_mask, u, 2.0)
    _, idx = jax.lax.top_k(-u, max_batch)
    valid = jnp.arange(max_batch) < data.batch_size
    w = valid.astype(jnp.float32) / data.batch_size.astype(jnp.float32)
    return idx, w


def unguarded_step(problem: Problem, inputs, state: RunState, data: RunData):
    """One optimizer step of one run without the divergence check: the new weights and
    optimizer state whatever their values, `diverged` left as it was. Returns
    (new_state, batch_loss)."""
    key = jax.random.fold_in(state.key, state.step)
    idx, w = sample_batch(key, data, problem.max_batch)
    x, y = inputs[idx], data.labels[idx]
    dropout_key = jax.random.fold_in(key, DROPOUT_STREAM) if problem.dropout else None

    def loss_fn(params):
        if problem.weight_noise:
            params = add_weight_noise(params, jax.random.fold_in(key, WEIGHT_NOISE_STREAM),
                                      problem.weight_noise)
        logits = model_output(problem, params, x, dropout_key)
        return jnp.sum(w * per_example_loss(logits, y, problem.loss, problem.n_classes,
                                             problem.loss_precision))

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = problem.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if problem.constant_norm:
        params = rescale_to_norm(params, state.params)
    return state.replace(params=params, opt_state=opt_state, step=state.step + 1), loss


def add_weight_noise(params, key, std: float):
    """`params` plus independent N(0, std^2) noise on every value of every parameter (openai/grok's
    weight noise: every weight and bias of its layers, LayerNorms and embedding included). The
    gradient is taken at the noisy point and applies to the parameters themselves."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten([p + std * jax.random.normal(k, p.shape, p.dtype)
                              for p, k in zip(leaves, keys)])


def train_step(problem: Problem, inputs, state: RunState, data: RunData):
    """One optimizer step of one run. Returns (new_state, batch_loss). A step whose loss or new
    weights are not finite marks the run diverged at that step; a diverged run is frozen: its
    weights and optimizer state stay as they were (its step counter goes on)."""
    new, loss = unguarded_step(problem, inputs, state, data)
    bad = ~jnp.isfinite(loss) | ~all_finite(new.params)
    newly = bad & ~state.diverged
    keep = state.diverged | bad
    frozen = jax.tree.map(lambda a, b: jnp.where(keep, a, b),
                          (state.params, state.opt_state), (new.params, new.opt_state))
    new = new.replace(params=frozen[0], opt_state=frozen[1], diverged=keep,
                      diverged_step=jnp.where(newly, state.step + 1, state.diverged_step))
    return new, loss


def rescale_to_norm(params, reference):
    """Rescale `params` to the global norm of `reference` (constant-norm control)."""
    target = optax.tree.norm(reference)
    return jax.tree.map(lambda p: p * (target / optax.tree.norm(params)), params)


def train_steps(problem: Problem, inputs, state: RunState, data: RunData, n_steps):
    """`n_steps` (may be traced) steps of one run, with the host out of the loop: `train_step`
    in a loop, the divergence check at every step. Works under `jax.vmap`."""
    return jax.lax.fori_loop(0, n_steps, lambda _, s: train_step(problem, inputs, s, data)[0],
                             state)


def train_wave(problem: Problem, inputs, states: RunState, data: RunData, n_steps):
    """`n_steps` steps of a wave of runs: `states` and `data` carry a leading axis of runs,
    which are trained together under `jax.vmap`. The same results as `train_steps` vmapped
    over the wave, bit for bit, with the divergence check taken out of the steps: the runs
    take `unguarded_step`s, keeping only whether every loss was finite; if a run that was
    healthy had a non-finite loss or ends with non-finite weights, the whole wave is trained
    again from `states` by `train_steps`, whose result is returned. Otherwise no step would
    have found anything to freeze, so the unguarded steps were `train_steps`' own. Runs that
    were already diverged only count their steps.

    The weights' check can wait for the end because a non-finite weight stays non-finite in
    every later step: `optax.apply_updates` adds (NaN + u and inf - inf are NaN, inf + a finite
    u is inf), and the constant-norm rescaling then multiplies by a NaN or zero factor (inf * 0
    is NaN). So the result does not depend on where calls begin and end either. Done at every
    step, the check is a pass over the weights and a select over the weights and both Adam
    moments, which XLA:CPU runs as passes of their own (results/benchmarks/README.md). The conditionals are on the whole wave, outside the `vmap`, so only one of
    their branches runs."""

    def unguarded(s, d):  # one run; whether all its losses were finite
        def body(_, carry):
            s, finite = carry
            new, loss = unguarded_step(problem, inputs, s, d)
            return new, finite & jnp.isfinite(loss)

        # all losses finite so far: True at the start (`ones_like`: typed like the run's own
        # arrays, as `shard_map` requires of a loop's carry)
        return jax.lax.fori_loop(0, n_steps, body, (s, jnp.ones_like(s.diverged)))

    def frozen(s):
        return s.replace(step=s.step + n_steps)

    def checked(s):
        return jax.vmap(lambda s1, d1: train_steps(problem, inputs, s1, d1, n_steps))(s, data)

    def attempt(s):
        fast, finite = jax.vmap(unguarded)(s, data)
        healthy = finite & jax.vmap(all_finite)(fast.params)
        if s.diverged.shape[0] > 1:  # a wave with a diverged run: that run stays as it was
            fast = jax.tree.map(lambda a, b: jnp.where(
                s.diverged.reshape(s.diverged.shape + (1,) * (a.ndim - 1)), a, b),
                frozen(s), fast)
        return jax.lax.cond(jnp.all(healthy | s.diverged), lambda: fast, lambda: checked(s))

    return jax.lax.cond(jnp.all(states.diverged), frozen, attempt, states)


def evaluate(problem: Problem, inputs, targets, params, data: RunData) -> dict:
    """Loss and accuracy on the run's full training and validation rows, and weight norms.
    Training rows are scored against the labels the run trains on; validation rows against
    the clean targets."""
    n = inputs.shape[0]
    c = problem.eval_rows
    pad = (-n) % c
    xs = jnp.concatenate([inputs, jnp.zeros((pad,) + inputs.shape[1:], inputs.dtype)])
    xs = xs.reshape((-1, c) + inputs.shape[1:])

    def chunk_logits(xc):
        return model_output(problem, params, xc)

    logits = jax.lax.map(chunk_logits, xs)
    logits = logits.reshape((-1,) + logits.shape[2:])[:n]
    pred = jnp.argmax(logits[..., : problem.n_classes], axis=-1)

    def scored(labels, mask):
        loss = per_example_loss(logits, labels, problem.loss, problem.n_classes,
                                problem.loss_precision)
        m = mask.astype(jnp.float32)
        cnt = jnp.maximum(m.sum(), 1.0)
        return jnp.sum(loss * m) / cnt, jnp.sum((pred == labels) * m) / cnt

    train_loss, train_acc = scored(data.labels, data.train_mask)
    val_loss, val_acc = scored(targets, data.val_mask)
    return dict(train_loss=train_loss, train_acc=train_acc, val_loss=val_loss, val_acc=val_acc,
                param_norm=global_norm(params), last_layer_norm=last_layer_norm(params))


METRIC_NAMES = METRIC_COLUMNS  # what `evaluate` returns, in the table's order (jgrok.schema)

"""R runs in lockstep: grid expansion, `jit(vmap(...))` of the one-run functions, sharding of the
run axis over devices, and the loop that trains, evaluates and calls its hooks (`jgrok.hooks`:
recording, checkpoints and the rest).

The host is only in the loop between evaluations: between two eval steps all runs advance with a
`lax.fori_loop` inside one jitted call (the trip count is an argument, so a log-spaced schedule
compiles once).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jgrok import memory, train
from jgrok.config import GROKFAST_OFF, ExperimentConfig
from jgrok.data.split import Dataset, split_run
from jgrok.models import build_model
from jgrok.optim import make_optimizer

EVAL_ROWS = 2048

#: XLA:CPU's choice of the ops its YNNPACK back-end runs, for the engine's CPU functions: dots
#: only. Its default in jaxlib 0.10.2 is dots and reductions, and its reductions over the rows
#: of a batch (the LayerNorm and bias gradients) take ~1.7 ms where XLA's own fused ones take a
#: few tenths (jax.profiler, the paper's transformer, one device); dots only measured 1.05-1.11x
#: the transformer's run-steps/s at R=32 and left the MLP's unchanged within noise on a
#: 2-core AMD EPYC; on a 2-core Intel Xeon (AVX-512) the transformer 3.8x, the MLP 0.95x
#: (benchmarks/bench_xla_options.py, results/benchmarks/README.md).
#: Only float rounding changes (tests/test_sweep.py); another jaxlib without the option gets
#: its own default (`cpu_compiler_options`).
CPU_COMPILER_OPTIONS = (("xla_cpu_experimental_ynn_fusion_type",
                         "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"),)


@dataclasses.dataclass
class Engine:
    """Compiled batched functions for one experiment, plus the batched run data."""

    cfg: ExperimentConfig
    dataset: Dataset
    grid: list  # one dict of grid coordinates per real run
    n_runs: int  # real runs
    n_padded: int  # runs including padding to a multiple of the device count
    mesh: Mesh
    problem: train.Problem
    run_data: train.RunData  # batched (n_padded, ...), sharded over the run axis
    inputs: jax.Array
    targets: jax.Array
    init: Callable
    advance: Callable
    evaluate: Callable
    wave: int = 0  # runs per wave on each device (0: all in one vmap)
    xla_options: tuple = ()  # XLA compiler options of the functions, (name, value) pairs

    def shard_runs(self, tree):
        return jax.device_put(tree, NamedSharding(self.mesh, P("runs")))


def run_mesh(devices=None, n_runs: Optional[int] = None) -> Mesh:
    """A 1-D mesh ("runs",) over `devices` (default: all). In one process, a grid of fewer
    runs than devices takes only the first `n_runs` devices (no device trains padding only)."""
    if devices is None:
        devices = jax.devices()
        if n_runs is not None and jax.process_count() == 1:
            devices = devices[:max(n_runs, 1)]
    return Mesh(np.array(list(devices)), ("runs",))


@functools.lru_cache(maxsize=None)
def cpu_compiler_options() -> tuple:
    """`CPU_COMPILER_OPTIONS` where this jaxlib's XLA:CPU accepts them (tried once on a tiny
    function), else none: the options are experimental and may be renamed or dropped."""
    cpu = jax.local_devices(backend="cpu")[0]
    try:
        jax.jit(lambda x: (x @ x).sum(0), compiler_options=dict(CPU_COMPILER_OPTIONS)).lower(
            jax.device_put(jnp.ones((4, 4), jnp.float32), cpu)).compile()
    except (jax.errors.JaxRuntimeError, ValueError, TypeError):
        return ()
    return CPU_COMPILER_OPTIONS


def compiler_options(devices) -> tuple:
    """XLA options, (name, value) pairs, for functions that run on `devices`:
    `cpu_compiler_options` where all are CPUs, else none."""
    devices = list(devices)
    if devices and all(d.platform == "cpu" for d in devices):
        return cpu_compiler_options()
    return ()


def default_wave(devices) -> int:
    """Runs vectorized together on one device. Accelerators take all of them (one `vmap`); on
    CPU, runs go one after another (each run's whole `fori_loop` in turn), which keeps a run's
    weights and optimizer state in cache and avoids XLA:CPU's slow batched matmuls: measured
    1.25-2.7x more run-steps/s than `vmap` at R=32 (results/benchmarks/README.md)."""
    return 1 if all(d.platform == "cpu" for d in devices) else 0


def build_engine(cfg: ExperimentConfig, dataset: Dataset, devices=None,
                 wave: Optional[int] = None, memory_limit: Optional[int] = None,
                 xla_options: Optional[tuple] = None) -> Engine:
    """`wave`: runs vectorized together per device, a *wave* (0: all, one `vmap`; None:
    the platform's default, `default_wave`). If a device cannot hold that many runs'
    temporaries, the wave is made as large as fits (`jgrok.memory.plan_wave`), and a grid whose
    states alone do not fit is refused (ConfigError). `memory_limit`: bytes per device to plan
    for, instead of the device's own limit. Waves change speed and memory only, not results.
    `xla_options`: XLA compiler options of the engine's functions, (name, value) pairs (None:
    `compiler_options` of the devices; (): XLA's own defaults); they change float rounding."""
    cfg.validate()
    grid = cfg.grid()
    n_runs = len(grid)
    mesh = run_mesh(devices, n_runs)
    n_dev = mesh.devices.size
    n_padded = -(-n_runs // n_dev) * n_dev
    padded = grid + [grid[-1]] * (n_padded - n_runs)

    splits = {}
    per_run = []
    for g in padded:
        k = (g["fraction"], g["split_seed"])
        if k not in splits:
            splits[k] = split_run(dataset, g["fraction"], g["split_seed"], cfg.task.label_noise,
                                  cfg.train.batch_size)
        per_run.append(splits[k])
    stacked = {k: np.stack([r[k] for r in per_run]) for k in per_run[0]}
    max_batch = int(stacked["batch_size"].max())

    key = (cfg.model, cfg.optim, cfg.train.steps, cfg.train.loss, cfg.train.loss_precision,
           dataset.n_classes, max_batch,
           min(EVAL_ROWS, dataset.size), tuple(mesh.devices.flat),
           tuple(dataset.inputs.shape[1:]), str(dataset.inputs.dtype))
    xla_options = tuple(compiler_options(mesh.devices.flat) if xla_options is None
                        else xla_options)
    key += (xla_options,)
    preferred = default_wave(mesh.devices.flat) if wave is None else int(wave)
    compiled = _compiled(*key, preferred)
    planned = _plan_wave(compiled[0], preferred, mesh, n_padded // n_dev, dataset,
                        {k: v[0] for k, v in stacked.items()}, memory_limit)
    problem, init, advance_fn, evaluate_fn = (compiled if planned == preferred
                                              else _compiled(*key, planned))

    runs = NamedSharding(mesh, P("runs"))
    repl = NamedSharding(mesh, P())
    run_data = jax.device_put(train.RunData(**{k: jnp.asarray(v) for k, v in stacked.items()}),
                              runs)
    inputs = jax.device_put(jnp.asarray(dataset.inputs), repl)
    targets = jax.device_put(jnp.asarray(dataset.targets), repl)
    return Engine(cfg=cfg, dataset=dataset, grid=grid, n_runs=n_runs, n_padded=n_padded,
                  mesh=mesh, problem=problem, run_data=run_data, inputs=inputs, targets=targets,
                  init=init, advance=advance_fn, evaluate=evaluate_fn, wave=planned,
                  xla_options=xla_options)


def _plan_wave(problem: train.Problem, preferred: int, mesh: Mesh, n_local: int,
                dataset: Dataset, one_run: dict, memory_limit: Optional[int]) -> int:
    """Runs per wave that the devices' memory allows (see `jgrok.memory`). On CPU without an
    explicit `memory_limit` only the states are checked against the host's available memory
    (waves of one run need little more), which costs no compilation."""
    dev = mesh.devices.flat[0]
    limit = memory_limit
    if limit is None:
        limit = memory.device_memory_limit(dev)
        if limit is not None and dev.platform == "cpu":  # host devices share the host's memory
            limit //= max(len(jax.local_devices()), 1)
    if limit is None:
        return preferred
    with_temp = memory_limit is not None or dev.platform != "cpu"
    data_shapes = tuple((tuple(a.shape), str(a.dtype)) for a in (dataset.inputs, dataset.targets))
    run_shapes = tuple(sorted((k, tuple(np.shape(v)), str(np.asarray(v).dtype))
                              for k, v in one_run.items()))
    rb = _run_bytes(problem, with_temp, data_shapes, run_shapes)
    return memory.plan_wave(n_local, rb, int(limit), preferred)


@functools.lru_cache(maxsize=32)
def _run_bytes(problem: train.Problem, with_temp: bool, data_shapes: tuple,
               run_shapes: tuple) -> memory.RunBytes:
    inputs, targets = (jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in data_shapes)
    one_run = train.RunData(**{k: jax.ShapeDtypeStruct(shape, dtype)
                               for k, shape, dtype in run_shapes})
    return memory.measure_run_bytes(problem, inputs, targets, one_run, with_temp=with_temp)


@functools.lru_cache(maxsize=32)
def _compiled(model_cfg, optim_cfg, steps, loss, loss_precision, n_classes, max_batch, eval_rows,
              devices, input_shape, input_dtype, xla_options, wave=0):
    """The problem and its jitted batched functions, shared by engines with the same settings
    (so a second sweep of the same shape, or a resumed one, does not compile again)."""
    model = build_model(model_cfg, n_classes)
    tx = make_optimizer(optim_cfg, steps)
    problem = train.Problem(model=model, tx=tx, loss=loss, n_classes=n_classes,
                            max_batch=max_batch, eval_rows=eval_rows,
                            loss_precision=loss_precision,
                            constant_norm=optim_cfg.constant_norm,
                            output_activation=model_cfg.output_activation,
                            matmul_precision=model_cfg.matmul_precision,
                            dropout=model_cfg.dropout, weight_noise=model_cfg.weight_noise)
    mesh = Mesh(np.array(devices), ("runs",))
    runs = NamedSharding(mesh, P("runs"))
    sample = jnp.zeros((1,) + input_shape, input_dtype)
    options = dict(xla_options)
    init = jax.jit(jax.vmap(functools.partial(train.init_run, problem, sample)),
                   out_shardings=runs, compiler_options=options)
    if wave <= 0:
        advance = jax.jit(
            jax.vmap(functools.partial(train.train_steps, problem), in_axes=(None, 0, 0, None)),
            donate_argnums=(1,), out_shardings=runs, compiler_options=options)
        evaluate = jax.jit(jax.vmap(functools.partial(train.evaluate, problem),
                                    in_axes=(None, None, 0, 0)), compiler_options=options)
        return problem, init, advance, evaluate

    def advance_local(inputs, state, data, n):
        return map_waves(lambda s, d: train.train_wave(problem, inputs, s, d, n), (state, data),
                         wave)

    def evaluate_local(inputs, targets, params, data):
        return jax.lax.map(lambda pd: train.evaluate(problem, inputs, targets, pd[0], pd[1]),
                           (params, data), batch_size=wave)

    # each device maps over its own slice of the run axis
    advance = jax.jit(jax.shard_map(advance_local, mesh=mesh,
                                    in_specs=(P(), P("runs"), P("runs"), P()),
                                    out_specs=P("runs")), donate_argnums=(1,),
                      compiler_options=options)
    evaluate = jax.jit(jax.shard_map(evaluate_local, mesh=mesh,
                                     in_specs=(P(), P(), P("runs"), P("runs")),
                                     out_specs=P("runs")), compiler_options=options)
    return problem, init, advance, evaluate


def map_waves(f, xs, wave: int):
    """`f(*wave_of_xs)` over consecutive waves of `wave` entries of the leading axis of the
    tuple `xs`, one wave after another (`lax.map`), the last one possibly shorter; the
    results concatenated along that axis. `lax.map(..., batch_size=wave)` with an `f` that
    takes a wave itself (instead of being vmapped), so that `f` can branch on the whole
    wave (`train.train_wave`)."""
    n = jax.tree.leaves(xs)[0].shape[0]
    full = n // wave * wave
    parts = []
    if full:
        waves = jax.tree.map(lambda a: a[:full].reshape((full // wave, wave) + a.shape[1:]), xs)
        out = jax.lax.map(lambda w: f(*w), waves)
        parts.append(jax.tree.map(lambda a: a.reshape((full,) + a.shape[2:]), out))
    if full < n:
        parts.append(f(*jax.tree.map(lambda a: a[full:], xs)))
    return parts[0] if len(parts) == 1 else jax.tree.map(
        lambda *a: jnp.concatenate(a), *parts)


def grid_arrays(engine: Engine) -> dict:
    """The per-run values of `init_run`'s arguments, arrays over the padded run axis (the
    Grokfast ones, absent from a grid without the filter, at their values without it)."""
    g = engine.grid + [engine.grid[-1]] * (engine.n_padded - engine.n_runs)
    out = dict(seed=np.array([r["seed"] for r in g], np.uint32),
               split_seed=np.array([r["split_seed"] for r in g], np.uint32),
               lr=np.array([r["lr"] for r in g], np.float32),
               weight_decay=np.array([r["weight_decay"] for r in g], np.float32),
               init_scale=np.array([r["init_scale"] for r in g], np.float32),
               **{k: np.array([r.get(k, GROKFAST_OFF[axis][0]) for r in g], np.float32)
                  for k, axis in (("grokfast_lamb", "grokfast_lambdas"),
                                  ("grokfast_alpha", "grokfast_alphas"))})
    return {k: engine.shard_runs(jnp.asarray(v)) for k, v in out.items()}


def init_state(engine: Engine) -> train.RunState:
    g = grid_arrays(engine)
    return engine.init(g["seed"], g["split_seed"], g["lr"], g["weight_decay"],
                       g["init_scale"], g["grokfast_lamb"], g["grokfast_alpha"])


def advance(engine: Engine, state: train.RunState, n_steps: int) -> train.RunState:
    """All runs take `n_steps` steps. The input state's buffers are donated."""
    if n_steps <= 0:
        return state
    return engine.advance(engine.inputs, state, engine.run_data, jnp.int32(n_steps))


def evaluate(engine: Engine, state: train.RunState) -> dict:
    """Metrics of every real run as host NumPy arrays of shape (n_runs,)."""
    return _evaluate(engine, state.params, state.diverged, state.diverged_step)


def _evaluate(engine: Engine, params, diverged, diverged_step) -> dict:
    m = engine.evaluate(engine.inputs, engine.targets, params, engine.run_data)
    m = dict(m, diverged=diverged, diverged_step=diverged_step)
    if jax.process_count() > 1:  # each process holds its slice of the run axis: gather them
        from jax.experimental import multihost_utils

        m = multihost_utils.process_allgather(m, tiled=True)
    else:
        m = jax.device_get(m)
    out = {k: np.asarray(v)[: engine.n_runs] for k, v in m.items()}
    out["diverged"] = out["diverged"].astype(int)
    return out


def metric_rows(engine: Engine, step: int, metrics: dict, extra_coords: Optional[dict] = None
                ) -> list[dict]:
    rows = []
    for i, g in enumerate(engine.grid):
        row = dict(run=i, **(extra_coords or {}), **g, step=int(step))
        for k in train.METRIC_NAMES:
            row[k] = float(metrics[k][i])
        row["diverged"] = int(metrics["diverged"][i])
        # step at which the run's loss or weights became non-finite (-1 while healthy)
        row["diverged_step"] = int(metrics["diverged_step"][i])
        rows.append(row)
    return rows


def run_to_step(engine: Engine, state, start_step: int, eval_steps, on_eval=None, pacer=None,
                on_piece=None, advance_with=None, hooks=()):
    """Advance from `start_step` through `eval_steps` (those > start_step), calling the hooks
    (`jgrok.hooks`: `after_eval(step, state, metrics)` after each evaluation, in list order,
    `after_piece(step, state)` after each piece); an `after_eval` that returns True ends the
    loop after that evaluation (every hook still hears it). `on_eval(step, state, metrics)` and
    `on_piece(step, state)`: plain callbacks, called before the hooks. Returns the final state.
    `advance_with(engine, state, n_steps, from_step)` replaces `advance` (e.g. a per-step
    logger).

    Without `pacer`, all runs go from one evaluation step to the next in one call. With it
    (`jgrok.reporting.Pacer`), that stretch is cut into timed pieces: `pacer.piece(step,
    n_left)` gives the steps of the next piece and `pacer.trained(n, seconds)` hears how long
    it took (`pacer.compiled(seconds)` first: the training loop is compiled ahead of time, and
    the jitted call reuses it); the hooks' `after_piece` may raise to stop there.
    If `pacer.defer_first_eval`, the evaluation at `start_step` waits until `pacer.ready` (the
    first steps are timed before a slow evaluation of the whole grid); it evaluates a copy of
    the parameters at `start_step`, so its metrics and the order of the hooks' calls do not
    change (it cannot end the loop: the state has moved on). Pieces change when the host looks,
    never the results: a step depends only on the state, which carries its own step counter and
    data-order key."""
    if on_eval is not None or on_piece is not None:
        hooks = [Callbacks(on_eval, on_piece), *hooks]
    step = start_step
    late = None  # (step, copy of what the evaluation at step needs) while it is put off
    if pacer is not None and advance_with is None and any(s > step for s in eval_steps):
        # compile the training loop on its own, so that the first piece is a timed one
        t = time.perf_counter()
        engine.advance.lower(engine.inputs, state, engine.run_data, jnp.int32(1)).compile()
        pacer.compiled(time.perf_counter() - t)
    for s in eval_steps:
        if s < step:
            continue
        if pacer is not None and pacer.defer_first_eval and s == start_step and late is None \
                and s < eval_steps[-1]:
            late = (s, jax.tree.map(jnp.copy, (state.params, state.diverged,
                                                state.diverged_step)))
            continue
        state, step, late = _train_to(engine, state, step, s, pacer, advance_with, late, hooks)
        if late is not None:
            late = _late_eval(engine, late, hooks)
        if after_eval(hooks, step, state, evaluate(engine, state)):
            break
    return state


def after_eval(hooks, step: int, state, metrics) -> bool:
    """Every hook's `after_eval`, in order; whether one of them asked to end the loop."""
    end = False
    for h in hooks:
        if hasattr(h, "after_eval") and h.after_eval(step, state, metrics):
            end = True
    return end


def _train_to(engine, state, step, s, pacer, advance_with, late, hooks):
    """Train from `step` to the evaluation step `s` (in timed pieces with a `pacer`)."""
    def run(st, n, from_step):
        return advance(engine, st, n) if advance_with is None else advance_with(engine, st, n,
                                                                                from_step)
    if pacer is None:
        return (run(state, s - step, step) if step < s else state), s, late
    while step < s:
        n = max(1, min(int(pacer.piece(step, s - step)), s - step))
        t = time.perf_counter()
        state = run(state, n, step)
        jax.block_until_ready(state)
        pacer.trained(n, time.perf_counter() - t)
        step += n
        if late is not None and (pacer.ready or step == s):
            late = _late_eval(engine, late, hooks)
        for h in hooks:
            if hasattr(h, "after_piece"):
                h.after_piece(step, state)
    return state, step, late


@dataclasses.dataclass
class Callbacks:
    """Plain functions as a hook: `on_eval(step, state, metrics)`, `on_piece(step, state)`."""

    on_eval: Optional[Callable] = None
    on_piece: Optional[Callable] = None

    def after_eval(self, step, state, metrics):
        if self.on_eval is not None:
            self.on_eval(step, state, metrics)

    def after_piece(self, step, state):
        if self.on_piece is not None:
            self.on_piece(step, state)


@dataclasses.dataclass(frozen=True)
class LateState:
    """What `on_eval` gets as the state of a put-off evaluation (the state has moved on): the
    parameters and status at the evaluated step, which is `step` (per run, like
    `RunState.step`)."""

    params: object
    step: jax.Array
    diverged: jax.Array
    diverged_step: jax.Array


def is_late(state) -> bool:
    """Whether `state` is the stand-in of a put-off evaluation (`LateState`)."""
    return isinstance(state, LateState)


def _late_eval(engine, late, hooks):
    """The put-off evaluation of `run_to_step`: the hooks get a `LateState` (and cannot end the
    loop)."""
    at, (params, diverged, diverged_step) = late
    metrics = _evaluate(engine, params, diverged, diverged_step)
    after_eval(hooks, at, LateState(params, jnp.full(diverged.shape, at, jnp.int32), diverged,
                                    diverged_step), metrics)
    return None


def train_sweep(cfg: ExperimentConfig, dataset: Dataset, devices=None,
                wave: Optional[int] = None, xla_options: Optional[tuple] = None
                ) -> tuple[pd.DataFrame, train.RunState]:
    """Train every run of the grid in memory, no files: returns (metrics table, final state).
    `wave` and `xla_options` as in `build_engine`."""
    engine = build_engine(cfg, dataset, devices, wave=wave, xla_options=xla_options)
    rows: list = []
    state = init_state(engine)
    state = run_to_step(engine, state, 0, cfg.train.eval_steps(),
                        lambda s, _, m: rows.extend(metric_rows(engine, s, m)))
    return pd.DataFrame(rows), state


def time_it(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    jax.block_until_ready(out)
    return out, time.perf_counter() - t

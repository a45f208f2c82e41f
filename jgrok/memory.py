"""Device memory planning: how many runs one device can vectorize at once.

A sweep keeps every run's state (parameters, optimizer state, per-run data masks) on its device
for the whole computation, but only a *wave* of runs needs its step temporaries (activations,
gradients, the optimizer's intermediate copies) at a time: `jgrok.sweep` trains the runs of a
device in waves of `wave` runs, one wave after another inside the same jitted call
(`lax.map` over chunks of a `vmap`). This module measures one run's bytes from XLA's memory
analysis of the compiled one-run programs and picks the largest wave that fits; a grid whose
states alone do not fit is refused with one line.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Optional

import jax
import jax.numpy as jnp

from jgrok import train
from jgrok.errors import ConfigError

HEADROOM = 0.8
"""Share of a device's memory that a sweep plans to use (the rest: XLA's own buffers,
fragmentation, the host's copies of metrics)."""

STATE_COPIES = 2
"""Copies of the run states alive at once: the donated input and the output of an advance can
share buffers, but evaluation and checkpointing hold a second reference."""


@dataclasses.dataclass(frozen=True)
class RunBytes:
    """Bytes one run needs: kept for the whole sweep (`state`: weights, optimizer state and its
    data masks) and while it is being trained or evaluated (`temp`: XLA's temporaries of the
    larger of one run's advance and evaluate); `shared`: the dataset, held once per device."""

    state: int
    temp: int
    shared: int


def tree_bytes(tree) -> int:
    """Bytes of the array leaves of `tree` (arrays or ShapeDtypeStructs; other leaves: 0)."""
    return sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)
               if hasattr(x, "shape") and hasattr(x, "dtype"))


def _abstract(x):
    return jax.ShapeDtypeStruct(x.shape, x.dtype)


def measure_run_bytes(problem: train.Problem, inputs, targets, one_run_data,
                      with_temp: bool = True) -> RunBytes:
    """One run's memory, from XLA's memory analysis of its compiled advance (`train_steps`)
    and evaluate, for a single run. `one_run_data` is one run's `RunData`. The advance's
    temporaries count one more copy of the run's state: a wave (`train.train_wave`) keeps the
    state it started from for the call (measured: the paper's transformer 35.45 + 4.80 MiB
    against 40.34 for `train_wave` compiled for a wave of one, the operand MLP 1.91 + 1.62
    against 3.53; compiling `train_wave` itself takes 1.6x as long, since it holds the step
    twice). `with_temp=False` skips the two compilations and reports `temp=0` (states only)."""
    scalar = jax.ShapeDtypeStruct((), jnp.float32)
    seed = jax.ShapeDtypeStruct((), jnp.uint32)
    sample = jnp.zeros((1,) + tuple(inputs.shape[1:]), inputs.dtype)
    state = jax.eval_shape(functools.partial(train.init_run, problem, sample),
                           seed, seed, scalar, scalar, scalar)
    data = jax.tree.map(_abstract, one_run_data)
    inp, tgt = _abstract(inputs), _abstract(targets)
    shared = tree_bytes(inp) + tree_bytes(tgt)
    if not with_temp:
        return RunBytes(state=tree_bytes(state) + tree_bytes(data), temp=0, shared=shared)
    adv = jax.jit(functools.partial(train.train_steps, problem)).lower(
        inp, state, data, jax.ShapeDtypeStruct((), jnp.int32)).compile()
    ev = jax.jit(functools.partial(train.evaluate, problem)).lower(
        inp, tgt, state.params, data).compile()
    temps = []
    for compiled in (adv, ev):
        stats = compiled.memory_analysis()
        temps.append(int(getattr(stats, "temp_size_in_bytes", 0) or 0) if stats else 0)
    temps[0] += tree_bytes(state)  # the wave's starting state, kept for the call
    return RunBytes(state=tree_bytes(state) + tree_bytes(data), temp=max(temps),
                    shared=shared)


def device_memory_limit(device) -> Optional[int]:
    """Bytes a device can hold: XLA's `bytes_limit` on accelerators; on CPU the host's
    available memory (MemAvailable), or None where neither is known."""
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory stats
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    if device.platform == "cpu":
        return host_available_memory()
    return None


def host_available_memory() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: float) -> str:
    if n >= 2**30:
        return f"{n / 2**30:,.2f} GiB"
    return f"{n / 2**20:,.2f} MiB" if n >= 2**20 else f"{n / 2**10:,.1f} KiB"


def plan_wave(n_local: int, rb: RunBytes, limit: int, preferred: int = 0,
              headroom: float = HEADROOM) -> int:
    """Runs per wave for `n_local` runs on a device of `limit` bytes: `preferred` (0: all of
    them in one `vmap`) if memory holds that many, else the most that fit (>= 1). Refuses, in
    one line, a grid whose run states alone do not fit."""
    budget = headroom * limit - rb.shared - STATE_COPIES * n_local * rb.state
    if budget < max(rb.temp, 1):
        raise ConfigError(
            f"the grid does not fit in device memory: {n_local} runs per device need "
            f"{_gib(STATE_COPIES * n_local * rb.state + rb.shared)} for their states and data "
            f"plus {_gib(rb.temp)} to train one run, but {headroom:.0%} of the device's "
            f"{_gib(limit)} is {_gib(headroom * limit)}; use fewer runs per sweep, more devices, "
            f"or a smaller model")
    want = n_local if preferred <= 0 else min(preferred, n_local)
    fits = int(budget // max(rb.temp, 1))
    return preferred if want <= fits else fits

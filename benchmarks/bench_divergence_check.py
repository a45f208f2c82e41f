"""The divergence check once per call (`train.train_wave`, the engine's waves) against the
check at every step (`train.train_steps` mapped over the same waves), timed in turn in one process. Not a test.

    python benchmarks/bench_divergence_check.py                  # both models, R = 32
    python benchmarks/bench_divergence_check.py --models=mlp --reps=10 --out=results/benchmarks/x.md

Both advance functions are built from the same engine (`map` layout: the runs sharded over one
CPU device per core, the engine's XLA options, `--wave` runs at a time on each device) and
compiled once; the two are then called in turn, `--reps` timed calls each after a warm-up, so
that the machine's drift falls on both alike, and their median run-steps/s are compared. First
the two are run from the same initial state, with the grid's learning rates and with one run in
two at lr 1e30 (they diverge within a few steps), and their states compared bit for bit.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from bench_throughput import (cpu_report, experiment, model_settings,  # noqa: E402
                              step_bench_args, task_dataset)
from jgrok import sweep, train  # noqa: E402

HUGE_LR = 1e30


def checked_every_step(eng: sweep.Engine):
    """The engine's advance with the check at every step: `train_steps` in
    `lax.map(..., batch_size=wave)` on each device (what `sweep._compiled` built before
    `train.train_wave`)."""
    problem = eng.problem

    def local(inputs, state, data, n):
        return jax.lax.map(lambda sd: train.train_steps(problem, inputs, sd[0], sd[1], n),
                           (state, data), batch_size=eng.wave)

    return jax.jit(jax.shard_map(local, mesh=eng.mesh, in_specs=(P(), P("runs"), P("runs"), P()),
                                 out_specs=P("runs")), donate_argnums=(1,),
                   compiler_options=dict(eng.xla_options))


def same_states(eng, variants: dict, steps: tuple) -> tuple:
    """Whether the variants' states agree bit for bit after `steps` calls; the number of
    diverged runs."""
    out = {}
    for name, f in variants.items():
        state = sweep.init_state(eng)
        for n in steps:
            state = f(eng.inputs, state, eng.run_data, jnp.int32(n))
        out[name] = jax.device_get(state)
    first, *rest = out.values()
    same = all(np.array_equal(a, b) for other in rest
               for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(other)))
    return same, int(np.asarray(first.diverged).sum())


def main():
    ap = step_bench_args("the divergence check once per call vs every step", reps=8)
    ap.add_argument("--wave", type=int, default=1, help="runs at a time on each device")
    args = ap.parse_args()
    emit = cpu_report("The divergence check once per call vs at every step")
    emit()
    emit("| model | R | wave | same states, bit for bit (healthy / with lr 1e30 runs) | "
         "every step: run-steps/s | once per call: run-steps/s | once / every | calls |")
    emit("|---|---|---|---|---|---|---|---|")
    for kind in args.models.split(","):
        s = model_settings(kind, False)
        ds = task_dataset(s)
        cfg = experiment(kind, s, args.runs)
        checks = []
        for lrs in ((cfg.sweep.lrs[0],), (cfg.sweep.lrs[0], HUGE_LR)):
            c = dataclasses.replace(cfg, sweep=dataclasses.replace(
                cfg.sweep, seeds=cfg.sweep.seeds[:max(len(cfg.sweep.seeds) // len(lrs), 1)],
                lrs=lrs))
            e = sweep.build_engine(c, ds, wave=args.wave)
            same, n_div = same_states(e, {"once": e.advance, "every": checked_every_step(e)},
                                      (3, 4))
            checks.append(f"{'yes' if same else 'NO'} ({n_div} diverged)")
        eng = sweep.build_engine(cfg, ds, wave=args.wave)
        variants = {"every": checked_every_step(eng), "once": eng.advance}
        steps = args.steps or (10 if kind == "transformer" else 200)
        states = {}
        for name, f in variants.items():  # warm-up (compiles)
            states[name] = f(eng.inputs, sweep.init_state(eng), eng.run_data, jnp.int32(steps))
            jax.block_until_ready(states[name])
        rates = {name: [] for name in variants}
        for _ in range(args.reps):
            for name, f in variants.items():
                t = time.perf_counter()
                states[name] = f(eng.inputs, states[name], eng.run_data, jnp.int32(steps))
                jax.block_until_ready(states[name])
                rates[name].append(eng.n_runs * steps / (time.perf_counter() - t))
        med = {name: float(np.median(r)) for name, r in rates.items()}
        calls = "; ".join(f"{name}: {', '.join(f'{x:.1f}' for x in r)}"
                          for name, r in rates.items())
        emit(f"| {kind} | {eng.n_runs} | {eng.wave} | {' / '.join(checks)} | "
             f"{med['every']:.2f} | {med['once']:.2f} | **{med['once'] / med['every']:.3f}x** | "
             f"{calls} |")
    emit()
    emit.finish(args.out)


if __name__ == "__main__":
    main()

"""Which ops XLA:CPU hands to its YNNPACK back-end, timed on jgrok's training step. Not a test.

    python benchmarks/bench_xla_options.py                   # both models, R = 32
    python benchmarks/bench_xla_options.py --models=transformer --variants=individual_dot,individual_dot+reduce

Each variant is one value of XLA's `xla_cpu_experimental_ynn_fusion_type`: fusion types joined
by `+` (`individual_dot`, `reduce`, `eltwise`, `dot`, ...; `LIBRARY_FUSION_TYPE_` is prepended
and the name upper-cased). The engine's advance function (`map` layout: the runs sharded over
one CPU device per core, run after run on each) is lowered once and compiled once per variant
in ONE process; the variants are then timed in turn, `--reps` times each, so that the
machine's drift falls on all of them alike; the medians are compared. A variant whose compiled
program is the same as XLA's default (the engine built without `sweep.CPU_COMPILER_OPTIONS`)
is marked. After the timings every variant's state is compared with the first's, bit for bit.
"""

from __future__ import annotations

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench_throughput import (cpu_report, experiment, flops_per_run_step,  # noqa: E402
                              model_settings, step_bench_args, task_dataset)
from jgrok import sweep  # noqa: E402

OPTION = "xla_cpu_experimental_ynn_fusion_type"


def option_value(variant: str) -> str:
    return ",".join("LIBRARY_FUSION_TYPE_" + t.upper() for t in variant.split("+"))


def copy(tree):
    return jax.tree.map(jnp.copy, tree)


def main():
    ap = step_bench_args("XLA:CPU YNNPACK fusion types on jgrok's step", reps=6)
    ap.add_argument("--variants", default="individual_dot,individual_dot+reduce,"
                                          "individual_dot+reduce+eltwise")
    args = ap.parse_args()
    emit = cpu_report("XLA:CPU YNNPACK fusion types on jgrok's training step")
    variants = args.variants.split(",")
    emit(f"- the engine's own options (`sweep.cpu_compiler_options()`): "
         f"`{dict(sweep.cpu_compiler_options())}`")
    emit()
    engine_value = dict(sweep.cpu_compiler_options()).get(OPTION)
    emit("| model | R | `ynn_fusion_type` | = XLA's default | the engine's | ms per step (median) | min | "
         "run-steps/s | GFLOP/s | vs first | bitwise = first |")
    emit("|---|---|---|---|---|---|---|---|---|---|---|")
    for kind in args.models.split(","):
        s = model_settings(kind, False)
        ds = task_dataset(s)
        steps = args.steps or (4 if kind == "transformer" else 20)
        cfg = experiment(kind, s, args.runs)
        eng = sweep.build_engine(cfg, ds, xla_options=())  # XLA's defaults
        state = sweep.init_state(eng)
        lowered = eng.advance.lower(eng.inputs, state, eng.run_data, jnp.int32(1))
        default_text = lowered.compile().as_text()
        compiled = {v: lowered.compile(compiler_options={OPTION: option_value(v)})
                    for v in variants}
        states = {v: compiled[v](eng.inputs, copy(state), eng.run_data, jnp.int32(steps))
                  for v in variants}  # warm-up
        times = {v: [] for v in variants}
        for rep in range(args.reps + 1):  # round 0: untimed
            for v in variants:
                jax.block_until_ready(states[v])
                t = time.perf_counter()
                states[v] = compiled[v](eng.inputs, states[v], eng.run_data, jnp.int32(steps))
                jax.block_until_ready(states[v])
                if rep:
                    times[v].append((time.perf_counter() - t) / steps)
        flops = flops_per_run_step(kind, s, ds.n_classes, shortcuts=True)
        first = jax.tree.leaves(states[variants[0]])
        med0 = float(np.median(times[variants[0]]))
        for v in variants:
            med = float(np.median(times[v]))
            same = all(np.array_equal(np.asarray(a), np.asarray(b))
                       for a, b in zip(first, jax.tree.leaves(states[v])))
            emit(f"| {kind} ({steps} steps a call) | {args.runs} | `{v}` | "
                 f"{'yes' if compiled[v].as_text() == default_text else 'no'} | "
                 f"{'yes' if option_value(v) == engine_value else 'no'} | "
                 f"{1e3 * med:.1f} | {1e3 * min(times[v]):.1f} | {args.runs / med:.2f} | "
                 f"{args.runs * flops / med / 1e9:.1f} | {med0 / med:.2f}x | "
                 f"{'yes' if same else 'no'} |")
    emit()
    emit(f"{args.reps} timed calls per variant, taken in turn. GFLOP/s: executed matmul FLOPs "
         f"(`flops_per_run_step`, shortcuts on).")
    emit.finish(args.out)


if __name__ == "__main__":
    main()

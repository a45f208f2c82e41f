"""How much of jgrok's training step is matmuls, and the share of the peak the step could reach
if everything else were free. Not a test.

    python benchmarks/bench_dots.py                          # both models, R = 32
    python benchmarks/bench_dots.py --models=mlp --out=results/benchmarks/dots_mlp.md

For each model it compiles one training step as the engine's advance function runs it (`map`
layout, one CPU device per core, the engine's own XLA options; `step_program`) and reads the
matmuls XLA actually kept from the compiled program's text: every `dot` instruction with its
operand and result shapes, contracting and batch dimensions. (The advance function holds the
step twice, in the loop it runs and in the one that retrains a wave after a divergence; the
one-step program's dots were checked to be those of the advance function before that, the
same shapes and dimensions, 12 for the MLP and 48 for the transformer.) Then, in one process:

  step   the engine's run-steps/s (`bench_throughput.time_engine`, `--reps` calls, median), and
         from it the time one training step of one run takes on a device
  dots   each of those dots alone, in the same arrangement (one copy on every device at once,
         `shard_map`, the same XLA options), repeated in a jitted loop whose iterations depend
         on each other (`optimization_barrier`), so it can be neither hoisted nor batched;
         the median of `--reps` calls, divided by the iterations

The sum of the dots' times is the step's time if nothing but its matmuls cost anything: the
ceiling of the step's share of the peak with these shapes on this machine. The peak is
`bench_throughput.matmul_peak` (1024 and 2048 square matmuls), measured next to each part.
Shares count the FLOPs the models execute (`flops_per_run_step(..., shortcuts=True)`); the
program's own dot FLOPs are printed beside them as a check of the parsing.
"""

from __future__ import annotations

import functools
import math
import os
import re
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402
from jax.sharding import Mesh, PartitionSpec as P  # noqa: E402

from bench_throughput import (cpu_report, experiment, flops_per_run_step,  # noqa: E402
                              matmul_peak, model_settings, step_bench_args, task_dataset,
                              time_engine)
from jgrok import sweep, train  # noqa: E402

PEAK_SIZES = (1024, 2048)
_DEF = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(\w+)\[([\d,]*)\]")
_DOT = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(\w+)\[([\d,]*)\]\S*\s+dot\("
                  r"%([\w.\-]+),\s*%([\w.\-]+)\)(.*)$")
_DTYPES = {"f32": jnp.float32, "bf16": jnp.bfloat16, "f16": jnp.float16, "f64": jnp.float64}


def _dims(attrs: str, name: str) -> tuple:
    m = re.search(name + r"=\{([\d,]*)\}", attrs)
    return tuple(int(d) for d in m.group(1).split(",") if d) if m else ()


def program_dots(hlo_text: str) -> list:
    """The `dot` instructions of a compiled HLO module's text: dicts with the operands' and
    result's shapes, dtype, dimension numbers and FLOPs (2 per multiply-add)."""
    shapes = {}
    for line in hlo_text.splitlines():
        m = _DEF.match(line)
        if m:
            shapes[m.group(1)] = tuple(int(d) for d in m.group(3).split(",") if d)
    dots = []
    for line in hlo_text.splitlines():
        m = _DOT.match(line)
        if not m:
            continue
        name, dtype, out, lhs, rhs, attrs = m.groups()
        lhs_shape, rhs_shape = shapes[lhs], shapes[rhs]
        lc, rc = _dims(attrs, "lhs_contracting_dims"), _dims(attrs, "rhs_contracting_dims")
        lb, rb = _dims(attrs, "lhs_batch_dims"), _dims(attrs, "rhs_batch_dims")
        out_shape = tuple(int(d) for d in out.split(",") if d)
        contracted = math.prod(lhs_shape[d] for d in lc)
        dots.append(dict(name=name, dtype=dtype, lhs=lhs_shape, rhs=rhs_shape, out=out_shape,
                         dims=((lc, rc), (lb, rb)),
                         flops=2.0 * math.prod(out_shape) * contracted))
    return dots


def step_program(eng, state) -> str:
    """The compiled text of one training step of one run, as the engine's advance runs it on
    its common path (`train.unguarded_step` vmapped over a wave of one, the engine's XLA
    options). The advance program itself holds the step twice: in the loop it runs and in
    the loop that trains a wave again after a divergence (`train.train_wave`)."""
    wave_of_one = jax.tree.map(lambda a: a[:1], (state, eng.run_data))
    step = jax.jit(jax.vmap(functools.partial(train.unguarded_step, eng.problem),
                            in_axes=(None, 0, 0)), compiler_options=dict(eng.xla_options))
    return step.lower(eng.inputs, *wave_of_one).compile().as_text()


def describe(d: dict) -> str:
    (lc, rc), (lb, rb) = d["dims"]
    batch = f", batch {lb}x{rb}" if lb else ""
    return (f"{'x'.join(map(str, d['lhs']))} . {'x'.join(map(str, d['rhs']))} over "
            f"{list(lc)}/{list(rc)}{batch} -> {'x'.join(map(str, d['out']))}")


def time_dot(d: dict, mesh: Mesh, options: dict, reps: int, target_s: float = 0.03) -> float:
    """Seconds per dot `d`, one copy on every device of `mesh` at once, in a jitted loop of
    dependent iterations; median of `reps` calls."""
    dtype = _DTYPES[d["dtype"]]
    n_dev = mesh.devices.size
    k = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(k[0], (n_dev,) + d["lhs"], jnp.float32).astype(dtype)
    b = jax.random.normal(k[1], (n_dev,) + d["rhs"], jnp.float32).astype(dtype)
    iters = int(min(20_000, max(8, target_s * 100e9 / max(d["flops"], 1.0))))

    def local(a, b):
        def body(_, carry):
            x, y, _ = carry
            out = lax.dot_general(x, y, d["dims"], precision=lax.Precision.HIGHEST)
            return lax.optimization_barrier((x, y, out))

        out0 = lax.pcast(jnp.zeros(d["out"], dtype), ("runs",), to="varying")
        return lax.fori_loop(0, iters, body, (a[0], b[0], out0))[2][None]

    f = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P("runs"), P("runs")),
                              out_specs=P("runs")), compiler_options=options)
    f(a, b).block_until_ready()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f(a, b).block_until_ready()
        times.append((time.perf_counter() - t) / iters)
    return float(np.median(times))


def main():
    args = step_bench_args("the matmuls of jgrok's step, timed alone", reps=3).parse_args()
    emit = cpu_report("The matmuls of jgrok's training step, timed alone")
    emit(f"- peak: best {'/'.join(map(str, PEAK_SIZES))} square f32 matmul "
         f"(`bench_throughput.matmul_peak`), measured before each engine call and before the "
         f"dots of each model")
    emit()
    summary = []
    for kind in args.models.split(","):
        s = model_settings(kind, False)
        ds = task_dataset(s)
        steps = args.steps or (10 if kind == "transformer" else 100)
        cfg = experiment(kind, s, args.runs)
        flops = flops_per_run_step(kind, s, ds.n_classes, shortcuts=True)
        eng = sweep.build_engine(cfg, ds, wave=1)
        state = sweep.init_state(eng)
        dots = program_dots(step_program(eng, state))
        n_dev = eng.mesh.devices.size
        r = time_engine(cfg, ds, steps, wave=1, reps=args.reps, peak_sizes=PEAK_SIZES)
        step_s = n_dev / r["rate"]  # one run-step on one device (the devices run side by side)
        step_peak = float(np.median(r["peaks"]))
        dot_peak = matmul_peak(PEAK_SIZES, reps=2)
        options = dict(eng.xla_options)
        times = [time_dot(d, eng.mesh, options, args.reps) for d in dots]
        dots_s = sum(times)
        dot_flops = sum(d["flops"] for d in dots)
        emit(f"## {kind} (p={s['p']}, batch {s['batch']}, R = {args.runs}, {n_dev} devices)")
        emit()
        emit("| dot in the compiled step | MFLOP | us alone | GFLOP/s (all devices) | % of peak "
             "| share of the dots' time |")
        emit("|---|---|---|---|---|---|")
        for d, t in sorted(zip(dots, times), key=lambda dt: -dt[1]):
            rate = n_dev * d["flops"] / t  # one copy on every device
            emit(f"| `{describe(d)}` | {d['flops'] / 1e6:.2f} | {1e6 * t:.1f} | "
                 f"{rate / 1e9:.1f} | {100 * rate / dot_peak:.0f}% | "
                 f"{100 * t / dots_s:.0f}% |")
        emit()
        step_share = n_dev * flops / step_s / step_peak  # = flops * rate / peak
        ceiling = n_dev * flops / dots_s / dot_peak
        emit(f"- {len(dots)} dots, {dot_flops / 1e6:.1f} MFLOP per run-step in the program "
             f"(`flops_per_run_step`: {flops / 1e6:.1f})")
        emit(f"- the step: {r['rate']:.2f} run-steps/s (calls {', '.join(f'{x:.1f}' for x in r['rates'])})"
             f" = {1e3 * step_s:.3f} ms per run-step on a device, {100 * step_share:.0f}% of the "
             f"peak beside ({step_peak / 1e9:.1f} GFLOP/s)")
        emit(f"- its dots alone: {1e3 * dots_s:.3f} ms = {100 * dots_s / step_s:.0f}% of the step; "
             f"the rest {1e3 * (step_s - dots_s):.3f} ms")
        emit(f"- ceiling, nothing but the dots: {n_dev / dots_s:.1f} run-steps/s, "
             f"**{100 * ceiling:.0f}% of the peak** beside ({dot_peak / 1e9:.1f} GFLOP/s)")
        emit()
        summary.append((kind, step_share, dots_s / step_s, ceiling))
    emit("| model | step's share of the peak | dots' share of the step time | ceiling: "
         "share of the peak with only the dots |")
    emit("|---|---|---|---|")
    for kind, share, frac, ceiling in summary:
        emit(f"| {kind} | {100 * share:.0f}% | {100 * frac:.0f}% | {100 * ceiling:.0f}% |")
    emit()
    emit.finish(args.out)


if __name__ == "__main__":
    main()

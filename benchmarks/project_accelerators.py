"""Projected wall time of the paper-size sweeps on accelerators, from FLOPs measured here. Not a
test, and not a measurement on an accelerator: no GPU or TPU is lent to this project.

    python benchmarks/project_accelerators.py --out=results/benchmarks/projection.md

For the Power et al. transformer (p = 97, 2 layers, d_model 128, batch 512) it counts the FLOPs
of one training step of one run twice: analytically (matmuls, as bench_throughput.py) and as XLA
reports them for the compiled step (`cost_analysis()`, every operation). Memory per run is the
state (parameters + AdamW moments) and XLA's temporaries of one step. The projection divides the
sweep's FLOPs by a device's datasheet peak times an assumed utilisation (a range), for full
float32 matmuls ('highest' precision: what bit-faithful float32 costs) and for the device's
default reduced-precision matmuls (TF32 on NVIDIA GPUs, bf16 passes on TPUs), which JAX uses
unless told otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import os
import platform
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402

from bench_throughput import flops_per_run_step  # noqa: E402
from jgrok import presets, sweep, tables, train  # noqa: E402
from jgrok.data.algorithmic import make_task  # noqa: E402
from jgrok.data.split import dataset_from_task  # noqa: E402
from jgrok.memory import tree_bytes  # noqa: E402

#: device -> {precision: datasheet peak FLOP/s (dense)}, as published by the vendors
DEVICES = {
    "NVIDIA H100 SXM": {"float32 (highest)": 67e12, "TF32 (JAX default)": 495e12},
    "NVIDIA A100 SXM": {"float32 (highest)": 19.5e12, "TF32 (JAX default)": 156e12},
    "Google TPU v5e": {"float32 (highest, ~6 bf16 passes)": 197e12 / 6,
                       "bf16 passes (JAX default)": 197e12},
}
UTILISATION = (0.3, 0.6)


def measure(preset: str):
    cfg = presets.get(preset)
    task = make_task(cfg.task.op, cfg.task.p)
    ds = dataset_from_task(task)
    cfg1 = dataclasses.replace(cfg, sweep=dataclasses.replace(cfg.sweep, seeds=(0,),
                                                              fractions=(0.5,)))
    engine = sweep.build_engine(cfg1, ds, wave=0)
    state = sweep.init_state(engine)
    one = jax.tree.map(lambda a: a[0], state)
    data = jax.tree.map(lambda a: a[0], engine.run_data)
    step = jax.jit(functools.partial(train.train_step, engine.problem)).lower(
        engine.inputs, one, data).compile()
    cost = step.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    mem = step.memory_analysis()
    s = dict(model=cfg.model, batch=engine.problem.max_batch)
    return dict(cfg=cfg, xla_flops=float(cost.get("flops", float("nan"))),
                analytic=flops_per_run_step("transformer", s, task.vocab_size),
                state_bytes=tree_bytes(one), temp_bytes=int(getattr(mem, "temp_size_in_bytes", 0)),
                batch=engine.problem.max_batch)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="")
    ap.add_argument("--cpu_run_steps_per_s", type=float, default=20.4,
                    help="measured jgrok transformer throughput on this CPU (R=32), for the "
                         "CPU row")
    args = ap.parse_args()
    lines = []
    emit = lines.append
    emit(f"# Projection: paper-size sweeps on accelerators ({datetime.date.today()})\n")
    emit("**A projection, not a measurement**: FLOPs counted on this machine "
         f"({platform.processor() or platform.machine()}, JAX {jax.__version__}, "
         f"{jax.default_backend()}); device peaks from datasheets; utilisation assumed "
         f"{UTILISATION[0]:.0%}-{UTILISATION[1]:.0%}. No accelerator was lent to measure it.\n")
    for preset, runs_desc in (("power", (9, 32, 100_000)), ("thesis", (9, 32, 2_000_000))):
        m = measure(preset)
        fr, seeds, steps = runs_desc
        run_steps = fr * seeds * steps
        flops = m["xla_flops"]
        emit(f"\n## `--preset={preset}`: {fr} fractions x {seeds} seeds x {steps:.0e} steps "
             f"= {run_steps:.3g} run-steps\n")
        emit(f"- FLOPs per run-step: {m['analytic'] / 1e9:.2f} GFLOP analytic (matmuls), "
             f"**{flops / 1e9:.2f} GFLOP** as XLA counts the compiled step (batch "
             f"{m['batch']}); the sweep: {run_steps * flops:.3g} FLOP")
        emit(f"- Memory per run: state {m['state_bytes'] / 2**20:.2f} MiB (parameters + AdamW "
             f"moments), step temporaries {m['temp_bytes'] / 2**20:.1f} MiB; all "
             f"{fr * seeds} runs vmapped at once: "
             f"{fr * seeds * (m['state_bytes'] + m['temp_bytes']) / 2**30:.1f} GiB\n")
        emit("| device | precision | peak TFLOP/s | hours at 60% | hours at 30% |")
        emit("|---|---|---|---|---|")
        for dev, precs in DEVICES.items():
            for prec, peak in precs.items():
                h = [run_steps * flops / (peak * u) / 3600 for u in (0.6, 0.3)]
                emit(f"| {dev} | {prec} | {peak / 1e12:.0f} | {h[0]:.2f} | {h[1]:.2f} |")
        cpu_h = run_steps / args.cpu_run_steps_per_s / 3600
        emit(f"| this 2-core CPU (measured {args.cpu_run_steps_per_s:g} run-steps/s at R=32) | "
             f"float32 | - | {cpu_h:,.0f} | |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        tables.write_text(text, args.out)


if __name__ == "__main__":
    main()

"""Scaling of one sweep over N forced host devices (N = 1, 2, 4, 8). Not a test.

    python benchmarks/bench_scaling.py                    # MLP, 32 runs, 100 steps
    python benchmarks/bench_scaling.py --model=transformer --runs=8 --steps=5

Each N runs in a fresh subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=N, so the
run axis is sharded over N CPU "devices" that share this machine's cores. Only
`sweep.advance` is timed (after a warm-up call). Efficiency = rate(N) / (rate(1) x min(N, cores)):
with 2 physical cores at most 2x is possible, and above 2 devices only overhead is added.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, os, sys, time
sys.path.insert(0, {root!r})
import jax, jax.numpy as jnp
from jgrok import sweep
from jgrok.config import ExperimentConfig, ModelConfig, SweepConfig, TaskConfig, TrainConfig
from jgrok.data.algorithmic import make_task
from jgrok.data.split import dataset_from_task
kind, runs, steps, chunk = {kind!r}, {runs}, {steps}, {chunk}
if kind == "mlp":
    p, batch, model = 23, 256, ModelConfig(kind="mlp", mlp_width=256, d_model=128)
else:
    p, batch, model = 97, 512, ModelConfig(kind="transformer")
cfg = ExperimentConfig(task=TaskConfig(op="x2_plus_y2", p=p), model=model,
                       train=TrainConfig(steps=100_000, batch_size=batch),
                       sweep=SweepConfig(seeds=tuple(range(runs)), fractions=(0.5,)))
eng = sweep.build_engine(cfg, dataset_from_task(make_task("x2_plus_y2", p)),
                         wave=None if chunk < 0 else chunk)
st = sweep.init_state(eng)
t = time.perf_counter(); st = sweep.advance(eng, st, 1); jax.block_until_ready(st)
compile_s = time.perf_counter() - t
t = time.perf_counter(); st = sweep.advance(eng, st, steps); jax.block_until_ready(st)
dt = time.perf_counter() - t
print("RESULT", json.dumps(dict(devices=jax.device_count(), rate=runs * steps / dt,
                                compile_s=compile_s, load=os.getloadavg()[0])))
"""


def main():
    ap = argparse.ArgumentParser(description="sweep throughput over forced host devices")
    ap.add_argument("--model", choices=("mlp", "transformer"), default="mlp")
    ap.add_argument("--runs", type=int, default=32)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--ns", default="1,2,4,8")
    ap.add_argument("--wave", type=int, default=-1, help="-1: platform default")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    lines = [f"## Scaling over forced host devices: {args.model}, {args.runs} runs, "
             f"{args.steps} steps ({cores} logical CPUs, load at start "
             f"{os.getloadavg()[0]:.2f})", "",
             "| devices | run-steps/s | speed-up | efficiency | compile+1 step s | load |",
             "|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    base = None
    for n in (int(x) for x in args.ns.split(",")):
        env = dict(os.environ, JAX_PLATFORMS="cpu",
                   XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        code = CHILD.format(root=ROOT, kind=args.model, runs=args.runs, steps=args.steps,
                            chunk=args.wave)
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True)
        res = [json.loads(line[7:]) for line in r.stdout.splitlines()
               if line.startswith("RESULT ")]
        if r.returncode or not res:
            line = f"| {n} | failed: {r.stderr.strip().splitlines()[-1:]} | | | | |"
        else:
            m = res[0]
            base = base or m["rate"]
            sp = m["rate"] / base
            line = (f"| {m['devices']} | {m['rate']:.1f} | {sp:.2f}x | "
                    f"{100 * sp / min(n, cores):.0f}% | {m['compile_s']:.1f} | "
                    f"{m['load']:.2f} |")
        lines.append(line)
        print(line, flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n".join(lines) + "\n\n")


if __name__ == "__main__":
    main()

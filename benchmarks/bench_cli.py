"""The user-level throughput check: the paper's command, timed end to end at two step counts,
against the best PyTorch arrangement measured in the same run. Not a test.

    python benchmarks/bench_cli.py                       # steps 50 and 200, both CPU layouts
    python benchmarks/bench_cli.py --steps=100,400 --out=results/benchmarks/cli.md

For each CPU layout (`--cpu_devices=0`, one device per core, the default; `--cpu_devices=1`,
one device) it runs

    python experiments/phase_diagram.py --op=x2_plus_y2 --p=97 --seeds=32 --fractions=0.5 \\
        --steps=S --nocompilation_cache --nofigures

for the two step counts S1 < S2 and times each whole process. The difference of the two wall
times is what the extra S2 - S1 steps of 32 runs cost, without start-up, data, compilation or
writing: run-steps/s = 32 (S2 - S1) / (t2 - t1). Evaluations (every 100 steps, the preset's)
are part of it, as they are for a user. PyTorch is `benchmarks/torch_baseline.py` on the same
model and data, as one process with 1 and 2 threads and as one single-threaded process per core
(summed); the ratio is against the best of them.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import torch_baseline  # noqa: E402
from bench_throughput import Report, cpu_name, load  # noqa: E402

COMMAND = ["--op=x2_plus_y2", "--p=97", "--seeds=32", "--fractions=0.5", "--nocompilation_cache",
           "--nofigures"]
RUNS = 32


def time_cli(flags: list, out: str, platforms: str = "cpu") -> float:
    """Wall seconds of one `phase_diagram.py <flags> --out=out` process (fails loudly if it
    fails), on JAX's `platforms` (the environment's JAX_PLATFORMS wins; "": JAX's choice)."""
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    if platforms and "JAX_PLATFORMS" not in env:
        env["JAX_PLATFORMS"] = platforms
    shutil.rmtree(out, ignore_errors=True)  # a fresh run directory each time
    t = time.perf_counter()
    r = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "phase_diagram.py"),
                        *flags, f"--out={out}"], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"phase_diagram.py failed (exit {r.returncode}): {r.stderr[-2000:]}")
    return wall


def main():
    ap = argparse.ArgumentParser(description="user-level jgrok vs PyTorch throughput")
    ap.add_argument("--steps", default="50,200", help="the two step counts S1,S2")
    ap.add_argument("--layouts", default="0,1", help="--cpu_devices values to time")
    ap.add_argument("--torch_steps", type=int, default=10)
    ap.add_argument("--work", default="/tmp/jgrok_bench_cli", help="scratch run directories")
    ap.add_argument("--out", default="", help="also write the Markdown here")
    args = ap.parse_args()
    s1, s2 = (int(s) for s in args.steps.split(","))
    if not 0 < s1 < s2:
        raise SystemExit(f"--steps={args.steps}: give S1,S2 with 0 < S1 < S2")
    emit = Report()
    emit(f"# User-level throughput: phase_diagram.py at two step counts "
         f"({datetime.datetime.now():%Y-%m-%d %H:%M})")
    emit()
    emit(f"- command: `python {' '.join(sys.argv)}`")
    emit(f"- timed: `python experiments/phase_diagram.py {' '.join(COMMAND)} --steps=S "
         f"--cpu_devices=D` for S = {s1}, {s2}")
    emit(f"- machine: {cpu_name()}, {os.cpu_count()} logical CPUs; load average at start: "
         f"{load()}")
    emit()
    rows = []
    for layout in (int(x) for x in args.layouts.split(",")):
        walls = [time_cli([*COMMAND, f"--steps={s}", f"--cpu_devices={layout}"],
                          os.path.join(args.work, f"d{layout}_s{s}"))
                 for s in (s1, s2)]
        rate = RUNS * (s2 - s1) / (walls[1] - walls[0])
        rows.append((layout, walls, rate, load()))
    arrangements = {}
    if torch_baseline.available():
        from jgrok.data.algorithmic import make_task
        from jgrok.data.split import dataset_from_task

        ds = dataset_from_task(make_task("x2_plus_y2", 97))
        kw = dict(kind="transformer", inputs=ds.inputs, targets=ds.targets, vocab=ds.n_classes,
                  fraction=0.5, batch=512, steps=args.torch_steps)
        for th in (1, 2):
            arrangements[f"1 process x {th} thread{'s' if th > 1 else ''}"] = (
                torch_baseline.run_steps_per_s(threads=th, **kw), load())
        n = os.cpu_count() or 1
        arrangements[f"{n} processes x 1 thread (sum)"] = (
            torch_baseline.parallel_run_steps_per_s(procs=n, **kw), load())
    best = max(arrangements.items(), key=lambda kv: kv[1][0]) if arrangements else None
    emit("| jgrok layout | wall s at S1 | wall s at S2 | run-steps/s (difference) | "
         "vs best PyTorch | load after |")
    emit("|---|---|---|---|---|---|")
    for layout, walls, rate, ld in rows:
        name = "one device per core (default)" if layout == 0 else f"{layout} CPU device(s)"
        vs = f"{rate / best[1][0]:.2f}x" if best else "skipped"
        emit(f"| {name} | {walls[0]:.1f} | {walls[1]:.1f} | {rate:.2f} | {vs} | {ld} |")
    emit()
    if best:
        emit(f"PyTorch (`benchmarks/torch_baseline.py`, the same transformer, p=97, batch 512, "
             f"{args.torch_steps} timed steps per run after 3 warm-up steps):")
        emit()
        emit("| PyTorch arrangement | run-steps/s | load |")
        emit("|---|---|---|")
        for name, (rate, ld) in arrangements.items():
            emit(f"| {name}{' (best)' if name == best[0] else ''} | {rate:.2f} | {ld} |")
    else:
        emit("PyTorch: skipped (torch not installed)")
    emit()
    emit.finish(args.out)


if __name__ == "__main__":
    main()

"""Throughput on an accelerator, measured in one run: jgrok's vmapped sweep against PyTorch on
the same device, the matmul precisions and bfloat16, and the paper-size phase diagram's wall
time measured end to end instead of projected. Not a test.

    python benchmarks/bench_accelerator.py --out=results/benchmarks/gpu_h200.md
    python benchmarks/bench_accelerator.py --quick      # smoke test (tiny sizes, any backend)

Jobs, run most wanted first, each skipped (and listed as skipped) when less of `--budget_s`
is left than it needs; `--only` picks jobs by label; the report is written after every job:

  peaks      the best jitted square matmul per dtype and precision: float32 at 'highest' (full
             float32), float32 at 'default' (TF32 on NVIDIA GPUs, bf16 passes on TPUs),
             bfloat16; each jgrok row's '% of peak' uses the peak of its own precision
  engine     `sweep.advance` with the engine's default layout (all runs in one `vmap` on an
             accelerator), each call timed for about `--call_s` seconds after an AOT compile and
             a warm-up: the Power et al. transformer (p = 97, batch 512, fraction 0.5;
             `bench_throughput.model_settings`) at `--rs` runs; the full 9 fractions x 32 seeds
             grid of `--preset=power`, in float32 'highest', then 'default' and bfloat16; the
             operand MLP at 288 runs
  torch      benchmarks/torch_baseline.py on the same device: one process training its runs one
             after another, and N processes side by side on the one device, one run each, their
             rates summed; last, torch.compile. Every ratio is against the best.
  cli        the user-level checks: `phase_diagram.py` timed as whole processes at two step
             counts (the difference: run-steps/s without start-up or compilation), for the
             paper-size diagram (`--seeds=32`, 9 fractions; from it the hours of its 1e5 steps)
             and for the issue's command (`--p=97 --seeds=32 --fractions=0.5`)

Order: peaks, transformer engine at `--rs`, the diagram, PyTorch transformer, CLI diagram,
'default' and bfloat16, CLI fraction 0.5, MLP engine, PyTorch MLP, torch.compile.

The second step count of each CLI pair is picked from the engine's measured rate so that the
difference lasts about `--cli_extra_s` seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import torch_baseline  # noqa: E402
from bench_cli import time_cli  # noqa: E402
from bench_throughput import (FRACTION, OP, cpu_name, experiment,  # noqa: E402
                              flops_per_run_step, fmt_mem, model_settings, task_dataset,
                              time_engine)
from jgrok import presets  # noqa: E402

#: (label, dtype, precision) of the peak measurements; the label is the jgrok rows' key
PRECISIONS = (("float32 highest", jnp.float32, "highest"),
              ("float32 default", jnp.float32, "default"),
              ("bfloat16", jnp.bfloat16, "default"))
DIAGRAM_STEPS = 100_000  # --preset=power


def matmul_rate(dtype, precision: str, n: int, calls: int = 10, reps: int = 3) -> float:
    """FLOP/s of the best of `reps` batches of `calls` jitted n x n matmuls (batches, not
    `bench_throughput.matmul_peak`'s single calls: an accelerator's calls are dispatched
    asynchronously, and a batch keeps the device busy between them)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32).astype(dtype)
    f = jax.jit(lambda x: jnp.dot(x, x, precision=precision))
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(calls):
            y = f(a)
        y.block_until_ready()
        best = min(best, (time.perf_counter() - t) / calls)
    return 2 * n**3 / best


def precision_of(model) -> str:
    if model.compute_dtype == "bfloat16":
        return "bfloat16"
    return f"float32 {model.matmul_precision}"


class Bench:
    """The measurements, in jobs run in priority order while the time budget lasts; the
    Markdown is rendered from what has been measured so far and written after every job."""

    def __init__(self, args):
        self.args = args
        self.t0 = time.perf_counter()
        self.peaks, self.engine, self.torch, self.cli, self.skipped = {}, [], [], [], []
        self.torch_device = "cpu"
        if torch_baseline.available() and torch_baseline.torch.cuda.is_available():
            self.torch_device = "cuda"
        self.head = [f"- command: `python {' '.join(sys.argv)}`",
                     f"- device: {jax.device_count()} x {jax.devices()[0].device_kind} "
                     f"({jax.default_backend()}); host {cpu_name()}, {os.cpu_count()} logical "
                     f"CPUs",
                     f"- jax {jax.__version__}; torch "
                     + (f"{torch_baseline.torch.__version__} on {self.torch_device}"
                        if torch_baseline.available() else "not installed")]
        self.tr = model_settings("transformer", args.quick)
        self.ml = model_settings("mlp", args.quick)
        self.data = {"transformer": task_dataset(self.tr), "mlp": task_dataset(self.ml)}
        self.seeds = 2 if args.quick else 32
        d = presets.get("power")
        fr = d.sweep.fractions[::4] if args.quick else d.sweep.fractions
        self.diagram = dataclasses.replace(
            d, task=dataclasses.replace(d.task, p=self.tr["p"]), model=self.tr["model"],
            sweep=dataclasses.replace(d.sweep, seeds=tuple(range(self.seeds)), fractions=fr))
        self.n_diagram = len(self.diagram.sweep.grid())

    def left(self) -> float:
        return self.args.budget_s - (time.perf_counter() - self.t0)

    def settings(self, kind: str) -> dict:
        return self.tr if kind == "transformer" else self.ml

    # the jobs -------------------------------------------------------------------------------
    def job_peaks(self):
        sizes = (256, 512) if self.args.quick else (4096, 8192)
        for label, dt, prec in PRECISIONS:
            self.peaks[label] = max(matmul_rate(dt, prec, n) for n in sizes)
        self.peak_sizes = sizes

    def job_engine(self, kind: str, runs: str, cfg):
        s, data = self.settings(kind), self.data[kind]
        m = time_engine(cfg, data, 5, None, reps=3, target_s=self.args.call_s)
        fl = flops_per_run_step(kind, s, data.n_classes, shortcuts=True)
        self.engine.append(dict(kind=kind, runs=runs, r=len(cfg.sweep.grid()),
                                prec=precision_of(cfg.model), m=m, flops=fl))

    def job_torch(self, kind: str, procs: int, compile: bool = False):
        s, data = self.settings(kind), self.data[kind]
        kw = dict(kind=kind, inputs=data.inputs, targets=data.targets, vocab=data.n_classes,
                  fraction=FRACTION, batch=s["batch"], steps=self.args.torch_steps,
                  compile=compile, device=self.torch_device)
        name = ("1 process" if procs == 1 else f"{procs} processes side by side (sum)") + (
            " + torch.compile" if compile else "")
        t = time.perf_counter()
        try:
            rate = (torch_baseline.run_steps_per_s(threads=1, **kw) if procs == 1 else
                    torch_baseline.parallel_run_steps_per_s(procs=procs, **kw))
        except Exception as e:  # noqa: BLE001 - torch.compile may not work here
            rate = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}"
        self.torch.append(dict(kind=kind, name=name, rate=rate, wall=time.perf_counter() - t))

    def job_cli(self, label: str, flags: list, n_runs: int, engine_rate):
        q = self.args.quick
        s1 = 20 if q else 200
        extra = self.args.cli_extra_s * engine_rate / n_runs if engine_rate else 1000
        s2 = s1 + max(100, int(round(extra, -2)))
        m = self.tr["model"]  # quick: the same tiny model as the engine rows
        model = ([] if not q else [f"--p={self.tr['p']}", f"--n_layers={m.n_layers}",
                                   f"--d_model={m.d_model}", f"--n_heads={m.n_heads}",
                                   f"--d_ff={m.d_ff}", f"--batch_size={self.tr['batch']}"])
        base = [f"--op={OP}", *flags, *model, "--nocompilation_cache", "--nofigures"]
        try:
            walls = [time_cli([*base, f"--steps={st}"],
                              os.path.join(self.args.work, f"s{st}"), platforms="")
                     for st in (s1, s2)]
        except SystemExit as e:
            self.cli.append(dict(label=label, s=(s1, s2), failed=str(e)[:300]))
            return
        self.cli.append(dict(label=label, s=(s1, s2), walls=walls, n=n_runs,
                             rate=n_runs * (s2 - s1) / (walls[1] - walls[0])))

    def engine_rate(self, kind: str, runs: str, r: int, prec: str = "float32 highest"):
        for row in self.engine:
            if (row["kind"], row["runs"], row["r"], row["prec"]) == (kind, runs, r, prec):
                return row["m"]["rate"]
        return None

    def jobs(self):
        """(label, seconds it needs at least, thunk), most wanted first."""
        T, d, n = "transformer", self.diagram, self.n_diagram
        rs = [int(r) for r in self.args.rs.split(",")]
        procs = [int(p) for p in self.args.torch_procs.split(",")]
        frac = f"fraction {FRACTION}"
        yield "peaks", 10, self.job_peaks
        for r in rs:
            yield f"engine {T} R={r}", 30, lambda r=r: self.job_engine(
                T, frac, experiment(T, self.tr, r))
        yield f"engine {T} diagram", 40, lambda: self.job_engine(T, "diagram", d)
        for p in procs:
            yield f"PyTorch {T} x{p}", 30, lambda p=p: self.job_torch(T, p)
        yield "CLI diagram", 60 + 2 * self.args.cli_extra_s, lambda: self.job_cli(
            f"--seeds={self.seeds} (the {len(d.sweep.fractions)}-fraction diagram)",
            [f"--seeds={self.seeds}"]
            + ([f"--fractions={','.join(map(str, d.sweep.fractions))}"] if self.args.quick
               else []), n, self.engine_rate(T, "diagram", n))
        for change in (dict(matmul_precision="default"), dict(compute_dtype="bfloat16")):
            yield f"engine {T} diagram {change}", 40, lambda c=change: self.job_engine(
                T, "diagram", dataclasses.replace(d, model=dataclasses.replace(d.model, **c)))
        yield "CLI fraction 0.5", 50 + 2 * self.args.cli_extra_s, lambda: self.job_cli(
            f"--p={self.tr['p']} --seeds={self.seeds} --fractions=0.5",
            [f"--p={self.tr['p']}", f"--seeds={self.seeds}", "--fractions=0.5"], self.seeds,
            self.engine_rate(T, frac, self.seeds))
        yield "engine mlp", 30, lambda: self.job_engine("mlp", frac, experiment("mlp", self.ml, n))
        for p in procs:
            yield f"PyTorch mlp x{p}", 30, lambda p=p: self.job_torch("mlp", p)
        yield f"PyTorch {T} torch.compile", 90, lambda: self.job_torch(T, 1, compile=True)

    # the report -----------------------------------------------------------------------------
    def render(self) -> list:
        out = [f"# jgrok on an accelerator ({datetime.datetime.now():%Y-%m-%d %H:%M})", "",
               *self.head, f"- wall time so far: {time.perf_counter() - self.t0:.0f} s", ""]
        if self.peaks:
            out += [f"## Matmul peaks (best jitted square matmul, "
                    f"{'/'.join(map(str, self.peak_sizes))})", "",
                    "| precision | TFLOP/s |", "|---|---|"]
            out += [f"| {k} | {v / 1e12:.3g} |" for k, v in self.peaks.items()] + [""]
        best = {}
        for t in self.torch:
            if not isinstance(t["rate"], str):
                best[t["kind"]] = max(best.get(t["kind"], 0.0), t["rate"])
        if self.engine:
            out += ["## jgrok engine (`sweep.advance`, the engine's default layout)", "",
                    "FLOPs per run-step: analytic matmul FLOPs of what the models execute "
                    "(`bench_throughput.flops_per_run_step`, shortcuts on; the diagram's batch "
                    "min(512, N_train / 2) counted as 512). '% of its peak': against the matmul "
                    "peak of the row's precision.", "",
                    "| model | runs | R | precision | wave | run-steps/s (median of 3) | calls | "
                    "steps/call | TFLOP/s | % of its peak | vs best PyTorch | compile s | "
                    "MiB/run | eval ms/run |", "|---|---|---|---|---|---|---|---|---|---|---|---|"
                    "---|---|"]
            for e in self.engine:
                m, rate = e["m"], e["m"]["rate"]
                vs = f"{rate / best[e['kind']]:.2f}x" if e["kind"] in best else "-"
                mem = None if m["mem"] is None else m["mem"] / m["n"]
                out.append(
                    f"| {e['kind']} | {e['runs']} | {e['r']} | {e['prec']} | {m['wave']} | "
                    f"{rate:.1f} | {', '.join(f'{x:.0f}' for x in m['rates'])} | {m['steps']} | "
                    f"{rate * e['flops'] / 1e12:.3g} | "
                    f"{100 * rate * e['flops'] / self.peaks[e['prec']]:.1f}% | {vs} | "
                    f"{m['compile_s']:.1f} | {fmt_mem(mem)} | {1e3 * m['eval_s'] / m['n']:.2f} |")
            out.append("")
            r_diag = self.engine_rate("transformer", "diagram", self.n_diagram)
            if r_diag:
                out += [f"The paper-size diagram ({self.n_diagram} runs x {DIAGRAM_STEPS:.0e} "
                        f"steps) at the engine's float32-highest rate: "
                        f"{self.n_diagram * DIAGRAM_STEPS / r_diag / 3600:.2f} h of training "
                        f"steps (evaluations, checkpoints and start-up are in the CLI rows).", ""]
        if self.torch:
            out += [f"## PyTorch on {self.torch_device} (`benchmarks/torch_baseline.py`: the same "
                    f"models, AdamW, batches drawn without replacement; float32 matmuls, TF32 "
                    f"off; {self.args.torch_steps} timed steps per run after 3 warm-up steps)", "",
                    "| model | arrangement | run-steps/s | wall s (with start-up) |",
                    "|---|---|---|---|"]
            for t in self.torch:
                rate = t["rate"] if isinstance(t["rate"], str) else f"{t['rate']:.1f}"
                top = " (best)" if t["rate"] == best.get(t["kind"]) else ""
                out.append(f"| {t['kind']} | {t['name']}{top} | {rate} | {t['wall']:.0f} |")
            out.append("")
        if self.cli:
            out += ["## User level: `phase_diagram.py --op=x2_plus_y2 <command> --steps=S "
                    "--nocompilation_cache --nofigures`, whole processes at two step counts", "",
                    "| command | S1, S2 | wall s at S1, S2 | run-steps/s (difference) | "
                    "vs best PyTorch | hours for 1e5 steps |", "|---|---|---|---|---|---|"]
            for c in self.cli:
                if "failed" in c:
                    out.append(f"| `{c['label']}` | {c['s']} | failed: {c['failed']} | | | |")
                    continue
                b = best.get("transformer")
                vs = f"{c['rate'] / b:.2f}x" if b else "-"
                out.append(f"| `{c['label']}` | {c['s'][0]}, {c['s'][1]} | {c['walls'][0]:.1f}, "
                           f"{c['walls'][1]:.1f} | {c['rate']:.1f} | {vs} | "
                           f"{c['n'] * DIAGRAM_STEPS / c['rate'] / 3600:.2f} |")
            out.append("")
        out += [f"- skipped: {s}" for s in self.skipped]
        return out


def main():
    ap = argparse.ArgumentParser(description="jgrok vs PyTorch on an accelerator")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--budget_s", type=float, default=470,
                    help="start no job that would not end within this many seconds")
    ap.add_argument("--rs", default="1,32", help="runs R of the engine rows at fraction 0.5 "
                    "(besides the 9 x 32 diagram)")
    ap.add_argument("--call_s", type=float, default=1.0, help="seconds per timed engine call")
    ap.add_argument("--torch_procs", default="1,16", help="PyTorch arrangements: processes "
                    "side by side on the device (1: one process, runs one after another)")
    ap.add_argument("--torch_steps", type=int, default=200)
    ap.add_argument("--cli_extra_s", type=float, default=20)
    ap.add_argument("--work", default="/tmp/jgrok_bench_accel", help="scratch run directories")
    ap.add_argument("--only", default="", help="comma-separated substrings: run only the jobs "
                    "whose label contains one (e.g. 'precision,bfloat16,mlp'; peaks always run)")
    ap.add_argument("--out", default="", help="also write the Markdown here")
    args = ap.parse_args()
    bench = Bench(args)
    only = [w for w in args.only.split(",") if w]

    def save():
        text = "\n".join(bench.render()) + "\n"
        if args.out:
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out, "w") as f:
                f.write(text)
        return text

    for label, need, job in bench.jobs():
        if only and label != "peaks" and not any(w in label for w in only):
            continue
        if bench.left() < need:
            bench.skipped.append(f"{label} ({bench.left():.0f} s of the budget left, about "
                                 f"{need:.0f} s needed)")
            continue
        t = time.perf_counter()
        try:
            job()
        except Exception as e:  # noqa: BLE001 - keep what the other jobs measured
            bench.skipped.append(f"{label}: failed ({type(e).__name__}: {str(e)[:200]})")
        print(f"[{time.perf_counter() - bench.t0:.0f} s] {label}: "
              f"{time.perf_counter() - t:.0f} s", flush=True)
        save()
    print(save())


if __name__ == "__main__":
    main()

"""Training throughput of jgrok (run-steps/s) against a plain PyTorch loop. Not a test.

    python benchmarks/bench_throughput.py                      # R = 1, 8, 32
    python benchmarks/bench_throughput.py --rs=1,8,32,128 --out=results/benchmarks/cpu.md
    python benchmarks/bench_throughput.py --quick              # smoke test, tiny sizes

For each model (the Power et al. transformer at p = 97 and the operand MLP at p = 23) and each
number of runs R it measures, on this machine in one process:

  map      jgrok's default engine: the runs sharded over the devices (on CPU one device per
           core, `jgrok.cli.use_cpu_cores`, as the entry points do); each device trains its
           runs one after another inside one jitted call (`wave=1`); on accelerators this is
           the same as `vmap`
  map1     `map` on one CPU device of the --cpu_devices (the runs not sharded over the cores)
  plain    `map` with the models' shortcuts off (`ModelConfig.shortcuts=False`: every position
           of every block, first layer per row): the computation before the shortcuts
  xladefault  `map` compiled with XLA:CPU's own defaults instead of the engine's
           `sweep.CPU_COMPILER_OPTIONS` (YNNPACK for dots only)
  waveK    `map` in vmapped waves of K runs (`wave=K`), e.g. wave2, wave4
  vmap     all R runs vectorized with one `jax.vmap` (`wave=0`)
  seq      R separate R=1 sweeps, one after another (the compiled function is shared)
  torch    benchmarks/torch_baseline.py: one process with 1 and with 2 intra-op threads (one
           run at a time), and N = cpu_count single-threaded processes side by side, one run
           each, their run-steps/s summed (process-per-core); with --torch_compile also the
           process-per-core arrangement through `torch.compile`. Every jgrok ratio is against
           the best of these arrangements.

Only `sweep.advance` is timed, for `--steps` steps after a warm-up call; compilation is timed
separately (ahead-of-time `lower().compile()` of the advance function). Memory per run is XLA's
own accounting of the compiled advance function (`memory_analysis()`: arguments + outputs +
temporaries - aliased (donated) bytes), divided by R. FLOPs per run-step are analytic matmul
FLOPs (incl. attention, x3 for forward + backward), counted for the computation each mode
actually executes (`flops_per_run_step(..., shortcuts=...)`: the shortcuts skip ~40% of the
transformer's and ~45% of the MLP's), and are compared with a measured peak: the best of
several jitted square f32 matmuls, on one device and on every device at once. This machine's
speed drifts (20% and more between minutes), so each jgrok mode is timed in `--reps` calls,
each right after its own peak measurement; a row gives the median rate and the median of the
calls' shares of the peak beside them. PyTorch's arrangements (separate processes) are compared
with the peak measured at start.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import torch_baseline  # noqa: E402
from jgrok import cli, sweep, train  # noqa: E402
from jgrok.config import (ExperimentConfig, ModelConfig, SweepConfig, TaskConfig,  # noqa: E402
                          TrainConfig)
from jgrok.data.algorithmic import make_task  # noqa: E402
from jgrok.data.split import dataset_from_task  # noqa: E402

FRACTION = 0.5
OP = "x2_plus_y2"  # the task of every benchmark (the paper's phase diagram)


def model_settings(kind: str, quick: bool) -> dict:
    if kind == "transformer":
        s = dict(p=97, batch=512, model=ModelConfig(kind="transformer", n_layers=2, d_model=128,
                                                    n_heads=4, d_ff=512))
        if quick:
            s = dict(p=11, batch=32, model=ModelConfig(kind="transformer", n_layers=1,
                                                       d_model=32, n_heads=2, d_ff=64))
    else:
        s = dict(p=23, batch=256, model=ModelConfig(kind="mlp", mlp_width=256, mlp_depth=2,
                                                    d_model=128))
        if quick:
            s = dict(p=7, batch=16, model=ModelConfig(kind="mlp", mlp_width=32, d_model=16))
    return s


def flops_per_run_step(kind: str, s: dict, vocab: int, shortcuts: bool = False) -> float:
    """Analytic matmul FLOPs of one training step of one run: 3 x forward (2 FLOPs per MAC).
    `shortcuts`: the FLOPs the models' shortcuts execute (jgrok/models: position 0 of every
    transformer block on the vocabulary's rows, the first block's Q/K/V on the table of token +
    position sums, the last block on the last position only; the MLP's first layer on the
    vocabulary table); otherwise the plain computation's."""
    m, b = s["model"], s["batch"]
    if kind == "transformer":
        t, d, ff, n = 4, m.d_model, m.d_ff or 4 * m.d_model, m.n_layers
        qkv, out, ffn, attn = 3 * d * d, d * d, 2 * d * ff, 2 * t * d  # MACs per position
        unembed = d * vocab  # last position only
        if not shortcuts:
            return 6.0 * b * (n * t * (qkv + out + ffn + attn) + unembed)
        if not vocab < b:  # per-example rows: only the last block's shortcut
            last = t * 2 * d * d + qkv // 3 + out + ffn + attn
            return 6.0 * b * ((n - 1) * t * (qkv + out + ffn + attn) + last + unembed)
        per_vocab = vocab * t * qkv  # first block's Q/K/V on the (V, T) table
        per_ex = unembed
        for i in range(n):
            if i == n - 1:  # K, V of positions 1.. per example; Q, out, FFN at the last one
                per_vocab += 0 if i == 0 else vocab * 2 * d * d
                per_ex += (0 if i == 0 else (t - 1) * 2 * d * d + d * d) + out + ffn + attn
            else:  # position 0 on the vocabulary's rows, positions 1.. per example
                per_vocab += vocab * ((0 if i == 0 else qkv) + out + ffn)
                per_ex += (t - 1) * ((0 if i == 0 else qkv) + out + ffn + attn)
        return 6.0 * (per_vocab + b * per_ex)
    w, depth, e = m.mlp_width, m.mlp_depth, m.d_model
    rest = (depth - 1) * w * w + w * vocab
    if shortcuts and vocab < b:
        return 6.0 * (2 * vocab * e * w + b * rest)
    return 6.0 * b * (2 * e * w + rest)


def matmul_peak(sizes=(256, 512, 1024, 2048), reps: int = 5) -> float:
    """Best FLOP/s of jitted square f32 matmuls over `sizes` (best of `reps` each), in two
    arrangements: one matmul on the default device (XLA:CPU's intra-op threads on every core),
    and, with several devices, one matmul on every device at once (the engine's arrangement);
    the best of all."""
    rates = []
    devices = jax.devices()
    mesh = jax.sharding.Mesh(np.array(devices), ("d",))
    every = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d"))
    for n in sizes:
        a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
        cases = [(jax.jit(lambda x: x @ x), a, 1)]
        if len(devices) > 1:
            stacked = jax.device_put(jnp.stack([a] * len(devices)), every)
            cases.append((jax.jit(jax.vmap(lambda x: x @ x), out_shardings=every), stacked,
                          len(devices)))
        for f, x, copies in cases:
            f(x).block_until_ready()
            best = float("inf")
            for _ in range(max(reps, 2 * 2048 // n)):
                t = time.perf_counter()
                f(x).block_until_ready()
                best = min(best, time.perf_counter() - t)
            rates.append(copies * 2 * n**3 / best)
    return max(rates)


def task_dataset(s: dict):
    """The benchmarks' dataset: the whole x^2 + y^2 table mod `s["p"]` (`model_settings`)."""
    return dataset_from_task(make_task(OP, s["p"]))


def experiment(kind: str, s: dict, runs: int) -> ExperimentConfig:
    return ExperimentConfig(task=TaskConfig(op=OP, p=s["p"]), model=s["model"],
                            train=TrainConfig(steps=100_000, batch_size=s["batch"]),
                            sweep=SweepConfig(seeds=tuple(range(runs)), fractions=(FRACTION,)))


def time_engine(cfg, dataset, steps: int, wave, devices=None, xla_options=None, reps: int = 1,
                peak_sizes=None, target_s: float = 0.0) -> dict:
    """Compile (AOT) and time `steps` steps of advance for the engine's runs (`xla_options` as
    in `sweep.build_engine`), `reps` timed calls after a warm-up call; `rate` is their median.
    With `target_s`, `steps` is only a first probe: the timed calls take as many steps as make
    one call last about `target_s` seconds (`steps` in the result).
    With `peak_sizes`, `matmul_peak(peak_sizes)` is measured just before every timed call
    (`peaks`, one per call), so that each call's share of the peak is taken at the same
    moment: this shared machine's speed drifts by 20% and more within minutes."""
    eng = sweep.build_engine(cfg, dataset, wave=wave, devices=devices, xla_options=xla_options)
    state = sweep.init_state(eng)
    args = (eng.inputs, state, eng.run_data, jnp.int32(1))
    t = time.perf_counter()
    compiled = eng.advance.lower(*args).compile()
    compile_s = time.perf_counter() - t
    mem = None
    try:
        ma = compiled.memory_analysis()
        mem = (ma.argument_size_in_bytes + ma.output_size_in_bytes + ma.temp_size_in_bytes
               - ma.alias_size_in_bytes)
    except Exception:  # noqa: BLE001 - not every backend reports it
        pass
    state = compiled(eng.inputs, state, eng.run_data, jnp.int32(1))  # warm-up
    jax.block_until_ready(state)
    if target_s:
        t = time.perf_counter()
        state = compiled(eng.inputs, state, eng.run_data, jnp.int32(steps))
        jax.block_until_ready(state)
        steps = max(1, int(steps * target_s / (time.perf_counter() - t)))
    rates, peaks, seconds = [], [], 0.0
    for _ in range(reps):
        if peak_sizes:
            peaks.append(matmul_peak(peak_sizes, reps=2))
        t = time.perf_counter()
        state = compiled(eng.inputs, state, eng.run_data, jnp.int32(steps))
        jax.block_until_ready(state)
        dt = time.perf_counter() - t
        seconds += dt
        rates.append(eng.n_runs * steps / dt)
    # evaluation cost (one call, after a warm-up call)
    jax.block_until_ready(eng.evaluate(eng.inputs, eng.targets, state.params, eng.run_data))
    t = time.perf_counter()
    jax.block_until_ready(eng.evaluate(eng.inputs, eng.targets, state.params, eng.run_data))
    eval_s = time.perf_counter() - t
    return dict(seconds=seconds, rate=float(np.median(rates)), rates=rates, peaks=peaks,
                compile_s=compile_s, mem=mem, eval_s=eval_s, n=eng.n_runs, steps=steps,
                wave=eng.wave)


def sampler_cost(dataset, s: dict, runs: int, reps: int = 10) -> float:
    """Seconds per run-step of the batch sampler alone (uniform draws + top_k over N rows)."""
    n = dataset.size
    mask = jnp.asarray(np.random.default_rng(0).random((runs, n)) < FRACTION)
    data = train.RunData(train_mask=mask, val_mask=~mask, labels=jnp.zeros((runs, n), jnp.int32),
                         batch_size=jnp.full((runs,), s["batch"], jnp.int32),
                         n_train=mask.sum(1).astype(jnp.int32))
    keys = jax.random.split(jax.random.PRNGKey(0), runs)
    f = jax.jit(jax.vmap(lambda k, d: train.sample_batch(k, d, s["batch"])[0]))
    f(keys, data).block_until_ready()
    t = time.perf_counter()
    for _ in range(reps):
        f(keys, data).block_until_ready()
    return (time.perf_counter() - t) / reps / runs


def load() -> str:
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "n/a"


class Report:
    """A benchmark's Markdown: each line printed as it comes (`report(line)`) and kept, and
    `finish` closes it with the load and wall time since the report began, also writing it
    into `out` if given."""

    def __init__(self):
        self.lines: list = []
        self.t_start = time.perf_counter()

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def finish(self, out: str) -> None:
        self(f"load average at end: {load()}; wall time "
             f"{time.perf_counter() - self.t_start:.0f} s")
        if out:
            os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
            with open(out, "w") as f:
                f.write("\n".join(self.lines) + "\n")


def step_bench_args(description: str, reps: int) -> argparse.ArgumentParser:
    """The flags of the scripts that time the engine's step on both models in variants
    (bench_dots, bench_xla_options, bench_divergence_check): --models, --runs, --steps,
    --reps (default `reps`), --out; a script adds its own."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--models", default="transformer,mlp")
    ap.add_argument("--runs", type=int, default=32)
    ap.add_argument("--steps", type=int, default=None, help="steps per timed call")
    ap.add_argument("--reps", type=int, default=reps, help="timed calls per measurement")
    ap.add_argument("--out", default="")
    return ap


def cpu_report(title: str) -> Report:
    """A `Report` for a script that runs on one CPU device per core (`cli.use_cpu_cores`,
    called here, before JAX starts its backends), opened with the title and date, the command
    and the machine."""
    cli.use_cpu_cores(0)
    emit = Report()
    emit(f"# {title} ({time.strftime('%Y-%m-%d %H:%M')})")
    emit()
    emit(f"- command: `python {' '.join(sys.argv)}`")
    emit(f"- machine: {cpu_name()}, {os.cpu_count()} logical CPUs, {jax.device_count()} "
         f"{jax.default_backend()} device(s); jax {jax.__version__}; load average at start: "
         f"{load()}")
    return emit


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fmt_mem(b):
    return "n/a" if b is None else f"{b / 2**20:.1f}"


def main():
    ap = argparse.ArgumentParser(description="jgrok training throughput vs PyTorch")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per measurement")
    ap.add_argument("--rs", default=None, help="numbers of runs, e.g. 1,8,32 (or 1,8,32,128)")
    ap.add_argument("--models", default="transformer,mlp")
    ap.add_argument("--modes", default="map,map1,plain,xladefault,wave2,vmap,seq",
                    help="jgrok modes to measure (map, plain, xladefault, waveK, vmap, seq; "
                         "map1/plain1: map/plain on one CPU device)")
    ap.add_argument("--torch_compile", action="store_true",
                    help="also measure the process-per-core PyTorch arrangement with "
                         "torch.compile (compiles in every process: minutes)")
    ap.add_argument("--seq_max", type=int, default=8,
                    help="seq: time at most this many R=1 sweeps and report their rate")
    ap.add_argument("--torch_steps", type=int, default=None)
    ap.add_argument("--cpu_devices", type=int, default=0,
                    help="CPU devices (0: one per core, the entry points' default; "
                         "jgrok.cli.use_cpu_cores); modes ending in 1 use only the first")
    ap.add_argument("--reps", type=int, default=None,
                    help="timed calls per jgrok mode, each after a peak measurement (median; "
                         "default 3, --quick 1; seq: 1)")
    ap.add_argument("--out", default="", help="also write the Markdown here")
    args = ap.parse_args()
    cli.use_cpu_cores(args.cpu_devices)  # before JAX starts its backends
    emit = Report()
    rs = [int(r) for r in (args.rs or ("1,4" if args.quick else "1,8,32")).split(",")]
    modes = args.modes.split(",")
    peak = matmul_peak((128, 256) if args.quick else (256, 512, 1024, 2048))
    peak_sizes = (128, 256) if args.quick else (1024, 2048)  # the sizes that give the best
    reps = args.reps or (1 if args.quick else 3)
    emit(f"# jgrok throughput ({datetime.datetime.now():%Y-%m-%d %H:%M})")
    emit()
    emit(f"- command: `python {' '.join(sys.argv)}`")
    emit(f"- machine: {cpu_name()}, {os.cpu_count()} logical CPUs, {jax.default_backend()} "
         f"backend, {jax.device_count()} device(s): {jax.devices()[0].device_kind}")
    emit(f"- jax {jax.__version__}; torch "
         f"{torch_baseline.torch.__version__ if torch_baseline.available() else 'not installed'}")
    emit(f"- load average at start: {load()} (the CPU is shared with other jobs: numbers are "
         f"noisy)")
    emit(f"- XLA_FLAGS: `{os.environ.get('XLA_FLAGS', '')}`")
    emit(f"- measured f32 matmul peak at start (best jitted square matmul, 256-2048, on one "
         f"device and on every device at once): {peak / 1e9:.1f} GFLOP/s; the jgrok rows' "
         f"'% of peak' uses instead the peak measured just before each of their {reps} timed "
         f"calls ({'/'.join(map(str, peak_sizes))}), the median of the calls' ratios")
    emit()
    for kind in args.models.split(","):
        s = model_settings(kind, args.quick)
        ds = task_dataset(s)
        vocab = ds.n_classes
        fl_plain = flops_per_run_step(kind, s, vocab, shortcuts=False)
        fl_fast = flops_per_run_step(kind, s, vocab, shortcuts=True)
        steps = args.steps or (5 if args.quick else (10 if kind == "transformer" else 100))
        emit(f"## {kind} (p={s['p']}, batch {s['batch']}, {ds.size} rows, fraction {FRACTION}): "
             f"{fl_plain / 1e6:.1f} MFLOP per run-step in the plain computation, "
             f"{fl_fast / 1e6:.1f} executed with the shortcuts; {steps} timed steps")
        emit()
        # torch baseline first: the reference for the ratios
        best = None
        if torch_baseline.available():
            tsteps = args.torch_steps or max(3, steps // 2)
            arrangements = {}
            for th in (1, 2):
                t0 = time.perf_counter()
                arrangements[f"1 process x {th} thread{'s' if th > 1 else ''}"] = (
                    torch_baseline.run_steps_per_s(kind, ds.inputs, ds.targets, vocab, FRACTION,
                                                   s["batch"], tsteps, threads=th),
                    time.perf_counter() - t0, load())
            n_proc = os.cpu_count() or 1
            for comp in ((False, True) if args.torch_compile else (False,)):
                t0 = time.perf_counter()
                try:
                    rate = torch_baseline.parallel_run_steps_per_s(
                        kind, ds.inputs, ds.targets, vocab, FRACTION, s["batch"], tsteps,
                        procs=n_proc, compile=comp)
                except Exception as e:  # noqa: BLE001 - torch.compile may not work here
                    emit(f"PyTorch {n_proc} processes x 1 thread"
                         f"{' + torch.compile' if comp else ''}: failed "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:120]})")
                    continue
                arrangements[f"{n_proc} processes x 1 thread (sum)"
                             f"{' + torch.compile' if comp else ''}"] = (
                    rate, time.perf_counter() - t0, load())
            best_name = max(arrangements, key=lambda k: arrangements[k][0])
            best = arrangements[best_name][0]
            emit(f"PyTorch arrangements, {tsteps} timed steps per run after 3 warm-up steps "
                 f"(wall s includes start-up and, with torch.compile, compilation):")
            emit()
            emit("| PyTorch arrangement | run-steps/s | GFLOP/s | % of start peak | wall s | "
                 "load |")
            emit("|---|---|---|---|---|---|")
            for name, (rate, wall, ld) in arrangements.items():
                emit(f"| {name}{' (best)' if name == best_name else ''} | {rate:.2f} | "
                     f"{rate * fl_plain / 1e9:.1f} | {100 * rate * fl_plain / peak:.0f}% | "
                     f"{wall:.0f} | {ld} |")
            emit()
            emit(f"Ratios below are against the best arrangement, {best_name}: {best:.2f}.")
        else:
            emit("PyTorch baseline: skipped (torch not installed)")
        emit()
        emit(f"| mode | R | run-steps/s (median of {reps}) | calls | vs same mode R=1 | "
             "vs PyTorch | GFLOP/s | % of peak | peak beside | compile s | MiB/run | "
             "eval ms/run | load |")
        emit("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        base = {}
        for mode in modes:
            for r in rs:
                cfg = experiment(kind, s, r)
                if mode == "seq":
                    n_time = min(r, args.seq_max)
                    tot, comp, mem, ev = 0.0, 0.0, None, 0.0
                    for i in range(n_time):
                        one = experiment(kind, s, 1)
                        one = one.__class__(task=one.task, model=one.model, optim=one.optim,
                                            train=one.train,
                                            sweep=SweepConfig(seeds=(i,), fractions=(FRACTION,)))
                        m = time_engine(one, ds, steps, None)
                        tot += m["seconds"]
                        comp, mem, ev = max(comp, m["compile_s"]), m["mem"], m["eval_s"]
                    m = dict(rate=n_time * steps / tot, rates=[n_time * steps / tot], peaks=[],
                             compile_s=comp, mem=mem, eval_s=ev, n=1)
                    label = f"seq ({n_time} timed)" if n_time < r else "seq"
                else:
                    if mode.startswith("plain"):
                        cfg = dataclasses.replace(cfg, model=dataclasses.replace(
                            cfg.model, shortcuts=False))
                    chunk = (0 if mode == "vmap" else int(mode[4:]) if mode.startswith("wave")
                             else None)
                    one = mode in ("map1", "plain1")
                    m = time_engine(cfg, ds, steps, chunk, jax.devices()[:1] if one else None,
                                    xla_options=() if mode == "xladefault" else None,
                                    reps=reps, peak_sizes=peak_sizes)
                    label = f"{mode} (1 of {jax.device_count()} devices)" if one else mode
                base.setdefault(mode, m["rate"] if r == rs[0] == 1 else None)
                r1 = base.get(mode)
                rel = f"{m['rate'] / r1:.2f}x" if r1 else "-"
                vs = f"{m['rate'] / best:.2f}x" if best else "skipped"
                fl = fl_plain if mode.startswith("plain") else fl_fast
                gf = m["rate"] * fl
                if m["peaks"]:
                    share = float(np.median([x * fl / pk for x, pk in zip(m["rates"],
                                                                          m["peaks"])]))
                    beside = f"{np.median(m['peaks']) / 1e9:.1f}"
                else:  # seq: no peak beside its calls
                    share, beside = gf / peak, "start"
                mem_run = None if m["mem"] is None else m["mem"] / max(m["n"], 1)
                calls = ", ".join(f"{x:.1f}" for x in m["rates"])
                emit(f"| {label} | {r} | {m['rate']:.2f} | {calls} | {rel} | {vs} | "
                     f"{gf / 1e9:.1f} | {100 * share:.0f}% | {beside} | {m['compile_s']:.1f} | "
                     f"{fmt_mem(mem_run)} | {1e3 * m['eval_s'] / max(m['n'], 1):.1f} | "
                     f"{load()} |")
        smp = sampler_cost(ds, s, max(rs))
        emit()
        emit(f"Batch sampler alone (uniform over {ds.size} rows + top_k {s['batch']}), "
             f"R={max(rs)}: {1e3 * smp:.3f} ms per run-step.")
        emit()
    emit.finish(args.out)


if __name__ == "__main__":
    main()

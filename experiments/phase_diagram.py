"""Train a whole phase diagram (seeds x training fractions x weight decays x lrs) in one
vmapped, jitted, checkpointed computation.

    python experiments/phase_diagram.py --op=x2_plus_y2 --seeds=32      # paper size (GPU)
    python experiments/phase_diagram.py --preset=cpu_grok                # CPU, minutes

`--preset=NAME` starts from a named configuration (jgrok/presets.py); flags given override it.

Writes <out>/config.json, <out>/metrics.csv, <out>/checkpoints/ and, at the end, the analysis
tables and figures. `--resume` continues a killed sweep from its newest checkpoint.
"""

from __future__ import annotations

import datetime
import os
import time

from common_flags import FLAGS, config_from_flags

from jgrok import cli
from jgrok.errors import ConfigError


def main(argv):
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    cfg = config_from_flags()
    cli.init_distributed(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id)  # first
    # data first: a bad op or modulus fails before JAX starts up
    from jgrok.data.algorithmic import make_task
    from jgrok.data.split import dataset_from_task

    task = make_task(cfg.task.op, cfg.task.p)
    dataset = dataset_from_task(task)

    # imports JAX: after the input checks, so bad input fails fast
    cli.enable_compilation_cache(FLAGS.compilation_cache)
    import jax

    from jgrok import rundir

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe_op = cfg.task.op.replace("/", "_").replace(":", "_")
    out = FLAGS.out or os.path.join("runs", f"{safe_op}-{stamp}")
    grid = cfg.sweep
    n_runs = len(grid.grid())
    print(f"task {task.name}: {dataset.size} equations, vocab {task.vocab_size}")
    print(f"grid: {len(grid.fractions)} fractions x {len(grid.seeds)} seeds"
          f"{' x ' + str(len(grid.split_seeds)) + ' split seeds' if grid.split_seeds else ''}"
          f" x {len(grid.weight_decays)} weight decays x {len(grid.lrs)} lrs"
          f" x {len(grid.init_scales)} init scales = {n_runs} runs")
    print(f"fractions {list(grid.fractions)}; weight decays {list(grid.weight_decays)}; "
          f"lrs {list(grid.lrs)}; init scales {list(grid.init_scales)}")
    print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind} "
          f"({jax.default_backend()})")
    print(f"preset {FLAGS.preset}; model {cfg.model.kind}; {cfg.train.steps} steps; out {out}")
    total = cfg.train.steps
    last_print = [0.0]
    timing = dict(t_start=time.perf_counter(), step_start=None)

    def progress(step, state, m):
        now = time.perf_counter()
        if timing["step_start"] is None:
            timing["step_start"] = step
        done = step - timing["step_start"]
        if done == 0:
            print(f"setup + compile of init/eval: {now - timing['t_start']:.1f}s", flush=True)
            timing["t_start"] = now
            return
        if "first_chunk_s" not in timing:
            timing["first_chunk_s"] = now - timing["t_start"]
            print(f"first chunk (includes compiling the train loop): "
                  f"{timing['first_chunk_s']:.1f}s", flush=True)
            timing["t_start"], timing["step_start"] = now, step
            return
        if now - last_print[0] < 2.0 and step != total:
            return
        last_print[0] = now
        elapsed = now - timing["t_start"]
        rate = done * n_runs / max(elapsed, 1e-9)
        eta = (total - step) * n_runs / max(rate, 1e-9)
        print(f"step {step}/{total}  {rate:,.0f} run-steps/s  ETA {eta:,.0f}s  "
              f"train_acc {m['train_acc'].mean():.3f}  val_acc {m['val_acc'].mean():.3f}  "
              f"(mean over runs)", flush=True)

    t0 = time.perf_counter()
    if FLAGS.memory_gb < 0:
        raise ConfigError(f"--memory_gb={FLAGS.memory_gb} must be >= 0")
    df = rundir.run_sweep(cfg, dataset, out, resume=FLAGS.resume, on_eval=progress,
                          extra_config=dict(task_name=task.name),
                          memory_limit=int(FLAGS.memory_gb * 2**30) or None)
    print(f"done in {time.perf_counter() - t0:.1f}s; metrics: {os.path.join(out, 'metrics.csv')}")
    if FLAGS.figures and jax.process_index() == 0:
        from jgrok import plots

        paths = plots.write_all_figures(df, out)
        print(f"wrote {len(paths)} analysis files under {out}")


if __name__ == "__main__":
    cli.run_main(main)

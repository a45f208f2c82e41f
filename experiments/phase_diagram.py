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

from common_flags import FLAGS, config_from_flags, memory_limit, refuse_given

from jgrok import cli
from jgrok.errors import ConfigError


def main(argv):
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    refuse_given("variants", why="phase_diagram.py trains one sweep (its grid: the sweep flags)")
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
    t0 = time.perf_counter()
    # progress (jgrok.reporting): an estimate after the first timed steps, then a bar on a
    # terminal or plain lines in a log, with ETA and fitted/generalized/diverged counts
    df = rundir.run_sweep(cfg, dataset, out, resume=FLAGS.resume,
                          extra_config=dict(task_name=task.name),
                          memory_limit=memory_limit(),
                          tensorboard=FLAGS.tensorboard)
    print(f"done in {time.perf_counter() - t0:.1f}s; metrics: {os.path.join(out, 'metrics.csv')}")
    if FLAGS.figures and jax.process_index() == 0:
        from jgrok import analysis, figures

        rep = analysis.report(df, out)
        paths = [*rep.paths, *figures.draw_report(rep, out)]
        print(f"wrote {len(paths)} analysis files under {out}")


if __name__ == "__main__":
    cli.run_main(main)

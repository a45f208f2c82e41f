"""Nanda et al.'s progress measures over training, several seeds; or Gromov's IPR.

    python experiments/progress_measures.py --p=53 --steps=4000 --seeds=3 --out=results/progress
    python experiments/progress_measures.py --preset=gromov --out=results/progress/gromov

``--preset=nanda`` trains `jgrok.presets.nanda_preset` at a CPU size (p = 53, 4000 steps
unless given) and adds `jgrok.analysis.measures.sweep_progress_measures` to metrics.csv at
every evaluation; after training, each run's final key frequencies are applied to the weights
of every evaluation (kept in <out>/param_snapshots/), as Nanda et al. plot them. Writes
phases.csv (`measures.phase_boundaries`), key_frequencies.md, progress_measures.png.
``--preset=gromov`` trains `jgrok.presets.gromov_preset` (p = 97, 3000 steps unless given) and
writes ipr.csv (each neuron's IPR, initial and final), ipr_curve.csv and gromov_ipr.png.
`--out` is a resumable run directory (`jgrok.rundir.run_sweep`; `--resume` continues it).
"""

from __future__ import annotations

import os

from absl import flags

from jgrok import cli
from jgrok.errors import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_enum("preset", "nanda", ["nanda", "gromov"], "which paper's set-up")
flags.DEFINE_integer("p", None, "modulus (default: 53 nanda, 97 gromov)", lower_bound=2)
flags.DEFINE_integer("steps", None, "training steps (default: 4000 nanda, 3000 gromov)",
                     lower_bound=1)
flags.DEFINE_integer("seeds", 3, "number of seeds (0..seeds-1)", lower_bound=1)
flags.DEFINE_float("fraction", None, "training fraction (default: the preset's)")
flags.DEFINE_float("lr", None, "learning rate (default: the preset's)")
flags.DEFINE_float("weight_decay", None, "weight decay (default: the preset's)")
flags.DEFINE_integer("d_model", 128, "nanda: residual width", lower_bound=1)
flags.DEFINE_integer("d_ff", 512, "nanda: MLP width", lower_bound=1)
flags.DEFINE_integer("width", 512, "gromov: hidden width", lower_bound=1)
flags.DEFINE_enum("variant", "noreg", ["noreg", "adamw"], "gromov: Adam without weight decay "
                  "or AdamW")
flags.DEFINE_integer("eval_every", None, "evaluate every this many steps (default: steps/100)",
                     lower_bound=1)
flags.DEFINE_integer("n_keys", 3, "number of key frequencies", lower_bound=1)
flags.DEFINE_enum("key_source", "embed", ["embed", "neurons"], "how key frequencies are chosen")
flags.DEFINE_string("out", None, "run directory (default results/progress[/gromov])")
flags.DEFINE_bool("resume", False, "continue the sweep in --out from its newest checkpoint")
flags.DEFINE_bool("replot", False, "nanda: no training; redo phases, table and figure from "
                  "<out>/metrics.csv")

#: CPU size of each preset: (p, steps)
CPU_SIZE = {"nanda": (53, 4000), "gromov": (97, 3000)}


def config():
    from jgrok import presets

    p, steps = FLAGS.p or CPU_SIZE[FLAGS.preset][0], FLAGS.steps or CPU_SIZE[FLAGS.preset][1]
    kw = {k: getattr(FLAGS, k) for k in ("fraction", "lr", "weight_decay")
          if getattr(FLAGS, k) is not None}
    kw.update(steps=steps, p=p, seeds=tuple(range(FLAGS.seeds)),
              eval_every=FLAGS.eval_every or max(steps // 100, 1))
    if FLAGS.preset == "nanda":
        cfg = presets.nanda_preset(d_model=FLAGS.d_model, d_ff=FLAGS.d_ff, **kw)
    else:
        cfg = presets.gromov_preset(width=FLAGS.width, variant=FLAGS.variant, **kw)
    cfg.validate()
    return cfg


def run_nanda(cfg, dataset, out):
    import jax
    import numpy as np

    from jgrok import figures, rundir, sweep, tables
    from jgrok.analysis import measures

    p = cfg.task.p
    engine = sweep.build_engine(cfg, dataset)  # the measures' view of the sweep's runs
    snapshots = os.path.join(out, "param_snapshots")

    def on_eval(step, state, m):
        measures.save_params(state.params, os.path.join(snapshots, f"{step}.npz"))
        f = measures.sweep_progress_measures(engine, state, FLAGS.n_keys, FLAGS.key_source)
        return {c: f[c].tolist() for c in (*measures.MEASURE_COLUMNS, "key_freqs")}

    if FLAGS.replot:
        df = tables.read_metrics(os.path.join(out, "metrics.csv"))
    else:
        df = rundir.run_sweep(cfg, dataset, out, resume=FLAGS.resume, on_eval=on_eval,
                              extra_config=dict(flags=FLAGS.flag_values_dict()))
        df = measures.with_final_key_losses(engine, df, snapshots, FLAGS.n_keys)
        tables.write_csv(df, os.path.join(out, "metrics.csv"))
    df["key_freqs"] = df["key_freqs"].astype(str)
    masks = np.asarray(jax.device_get(engine.run_data.train_mask))
    shares = {i: measures.commutation_share(masks[i], p) for i in range(engine.n_runs)}
    phases = measures.phase_boundaries(df, shares)
    tables.write_csv(phases, os.path.join(out, "phases.csv"))
    table = measures.key_frequency_markdown(df[df.step == df.step.max()].sort_values("run"),
                                            phases, df)
    tables.write_text(table, os.path.join(out, "key_frequencies.md"))
    figures.plot_progress_measures(df, phases, os.path.join(out, "progress_measures.png"))
    print(phases.to_string(index=False) + "\n" + table)


def run_gromov(cfg, dataset, out):
    import pandas as pd

    from jgrok import checkpoint, figures, rundir, sweep, tables
    from jgrok.analysis import measures

    engine = sweep.build_engine(cfg, dataset)

    def on_eval(step, state, m):
        ipr = measures.sweep_gromov_ipr(engine, state)
        return dict(ipr_mean=[float((g.ipr_x.mean() + g.ipr_y.mean()) / 2)
                              for _, g in ipr.groupby("run")])

    df = rundir.run_sweep(cfg, dataset, out, resume=FLAGS.resume, on_eval=on_eval,
                          extra_config=dict(flags=FLAGS.flag_values_dict()))
    _, raw = checkpoint.load_raw(out)  # the final weights
    ipr = pd.concat([
        measures.sweep_gromov_ipr(engine, sweep.init_state(engine)).assign(when="initial"),
        measures.sweep_gromov_ipr(engine, None, params=engine.shard_runs(raw["params"]))
        .assign(when="final", step=cfg.train.steps)], ignore_index=True)
    ipr["seed"] = [engine.grid[r]["seed"] for r in ipr.run]
    curve = df[["run", "seed", "step", "ipr_mean", "train_acc", "val_acc"]]
    tables.write_csv(ipr, os.path.join(out, "ipr.csv"))
    tables.write_csv(curve, os.path.join(out, "ipr_curve.csv"))
    figures.plot_gromov_ipr(ipr, curve, os.path.join(out, "gromov_ipr.png"))
    print(measures.ipr_summary(ipr))


def main(argv):
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    cfg = config()
    from jgrok.data.algorithmic import make_task
    from jgrok.data.split import dataset_from_task

    dataset = dataset_from_task(make_task("add", cfg.task.p))
    out = FLAGS.out or ("results/progress" if FLAGS.preset == "nanda"
                        else "results/progress/gromov")
    (run_nanda if FLAGS.preset == "nanda" else run_gromov)(cfg, dataset, out)


if __name__ == "__main__":
    cli.run_main(main)

"""Nanda et al.'s progress measures over training, several seeds; or Gromov's IPR.

    python experiments/progress_measures.py --p=53 --steps=4000 --seeds=3 --out=results/progress
    python experiments/progress_measures.py --preset=nanda --key_threshold=3 --out=results/nanda_p113
    python experiments/progress_measures.py --preset=gromov_cpu --out=results/progress/gromov

Starts from the preset ``nanda_cpu`` (`jgrok.presets.nanda_preset` at a CPU size: p = 53, 4000
steps, 3 seeds, an evaluation every 40 steps); every config flag given (``--p``, ``--steps``,
``--fractions``, ``--lrs``, ``--weight_decays``, ``--d_model``, ``--d_ff``, ``--eval_every``,
...) overrides it. A transformer preset adds `jgrok.analysis.measures.sweep_progress_measures`
to metrics.csv at every evaluation; after training, each run's final key frequencies are
applied to the weights of every evaluation (kept in <out>/param_snapshots/), as Nanda et al.
plot them (``--key_threshold``: the final key frequencies by the threshold rule of
`measures.final_key_masks`, as many as the weights hold). Writes phases.csv
(`measures.phase_boundaries`), spikes.csv, key_frequencies.md, paper_comparison.md (beside Nanda et al.'s
published numbers), progress_measures.png and nanda_phases.png (the paper's layout).
``--preset=nanda`` is the paper's run at its size (p = 113, 40k steps, 3 seeds). An MLP preset (``--preset=gromov_cpu``: `jgrok.presets.gromov_preset`,
p = 97, 3000 steps, 3 seeds, an evaluation every 30 steps; ``--optimizer=adamw
--weight_decays=1`` is its AdamW variant) writes ipr.csv (each neuron's IPR, initial and final),
ipr_curve.csv and gromov_ipr.png. `--out` is a resumable run directory
(`jgrok.rundir.run_sweep`; `--resume` continues it).
"""

from __future__ import annotations

import os

from absl import flags
from common_flags import FLAGS, config_from_flags, memory_limit, refuse_given

from jgrok import cli
from jgrok.errors import ConfigError

flags.DEFINE_integer("n_keys", 3, "number of key frequencies", lower_bound=1)
flags.DEFINE_enum("key_source", "embed", ["embed", "neurons"], "how key frequencies are chosen")
flags.DEFINE_float("key_threshold", 0.0, "transformer presets: each run's final key "
                   "frequencies are those whose share of the embedding's squared Fourier norm "
                   "exceeds this many times the mean share (0: the --n_keys largest)",
                   lower_bound=0.0)
flags.DEFINE_bool("replot", False, "transformer presets: no training; redo the final-key "
                  "measures (from <out>/param_snapshots), phases, tables and figures from "
                  "<out>/metrics.csv")

FLAGS.set_default("preset", "nanda_cpu")


def run_nanda(cfg, dataset, out):
    import jax
    import numpy as np

    from jgrok import figures, rundir, sweep, tables
    from jgrok.analysis import measures
    from jgrok.analysis.spikes import spikes_table

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
                              extra_config=dict(flags=FLAGS.flag_values_dict()),
                              memory_limit=memory_limit(), tensorboard=FLAGS.tensorboard)
    if os.path.isdir(snapshots):  # (a committed run directory has none: its table is kept)
        masks = None
        if FLAGS.key_threshold > 0:
            final = measures.load_params(os.path.join(snapshots, f"{int(df.step.max())}.npz"),
                                         measures.sweep_state_params(engine))
            masks = measures.final_key_masks(engine, engine.shard_runs(final),
                                             FLAGS.key_threshold)
        df = measures.with_final_key_losses(engine, df, snapshots, FLAGS.n_keys, masks)
        tables.write_csv(df, os.path.join(out, "metrics.csv"))
    df["key_freqs"] = df["key_freqs"].astype(str)
    train_masks = np.asarray(jax.device_get(engine.run_data.train_mask))
    shares = {i: measures.commutation_share(train_masks[i], p) for i in range(engine.n_runs)}
    phases = measures.phase_boundaries(df, shares, p)
    tables.write_csv(phases, os.path.join(out, "phases.csv"))
    table = measures.key_frequency_markdown(df[df.step == df.step.max()].sort_values("run"),
                                            phases, df)
    tables.write_text(table, os.path.join(out, "key_frequencies.md"))
    tables.write_csv(spikes_table(df), os.path.join(out, "spikes.csv"))  # training-loss spikes
    comparison = measures.paper_comparison_markdown(phases, df)
    tables.write_text(comparison, os.path.join(out, "paper_comparison.md"))
    figures.plot_progress_measures(df, phases, os.path.join(out, "progress_measures.png"))
    figures.plot_nanda_phases(df, phases, os.path.join(out, "nanda_phases.png"))
    print(phases.to_string(index=False) + "\n" + table + "\n" + comparison)


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
                          extra_config=dict(flags=FLAGS.flag_values_dict()),
                          memory_limit=memory_limit(), tensorboard=FLAGS.tensorboard)
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
    refuse_given("coordinator", "figures", "variants", why="progress_measures.py trains one "
                 "sweep in one process and always writes its tables and figure")
    cfg = config_from_flags()
    nanda = cfg.model.kind == "transformer"
    if not nanda and (cfg.model.kind != "mlp" or cfg.model.mlp_input != "onehot"):
        raise ConfigError(f"--preset={FLAGS.preset}: the progress measures need a transformer "
                          f"(Nanda et al.'s) or a one-hot operand MLP (Gromov's), not model "
                          f"{cfg.model.kind!r} with input {cfg.model.mlp_input!r}")
    from jgrok.data.algorithmic import make_task
    from jgrok.data.split import dataset_from_task

    dataset = dataset_from_task(make_task(cfg.task.op, cfg.task.p))
    cli.enable_compilation_cache(FLAGS.compilation_cache)
    out = FLAGS.out or ("results/progress" if nanda else "results/progress/gromov")
    (run_nanda if nanda else run_gromov)(cfg, dataset, out)


if __name__ == "__main__":
    cli.run_main(main)

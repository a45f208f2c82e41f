"""The slingshot effect (Thilak et al. 2022) with a per-step log, and two numerical switches.

    python experiments/slingshot.py --out=results/slingshot

Trains a small Nanda-style transformer (``jgrok.presets.nanda_preset`` with smaller widths) on
``(x + y) mod p`` with Adam and NO weight decay, full batch, for each variant:

* ``base``: Adam epsilon ``--eps`` (1e-8);
* ``large_eps``: Adam epsilon ``--large_eps`` (default 1e-5), Thilak et al.'s remedy;
* ``f64``: epsilon ``--eps`` with the cross-entropy's log-sum-exp in float64
  (``jgrok.slingshot.advance_logged(..., float64_loss=True)``).

Each variant is a resumable run directory <out>/<variant>/ (`jgrok.rundir.run_sweep` with the
per-step logger `jgrok.slingshot.advance_logged`: training loss and last-layer norm at EVERY
step; accuracy every ``--eval_every`` steps; ``--resume`` continues). Spikes: per-step
`jgrok.analysis.spikes.per_step_spikes`. Writes <out>/steps.csv, metrics.csv, spikes.csv,
summary.csv and slingshot.png."""

from __future__ import annotations

import dataclasses
import os
import time

from absl import flags

from jgrok import cli
from jgrok.errors import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_integer("p", 23, "modulus")
flags.DEFINE_float("fraction", 0.5, "training fraction")
flags.DEFINE_integer("steps", 6000, "training steps")
flags.DEFINE_integer("seeds", 3, "number of seeds (0..seeds-1), vmapped", lower_bound=1)
flags.DEFINE_float("lr", 1e-3, "learning rate")
flags.DEFINE_float("weight_decay", 0.0, "weight decay (slingshot: 0)")
flags.DEFINE_string("optimizer", "adam", "adam | adamw")
flags.DEFINE_integer("d_model", 32, "residual width")
flags.DEFINE_integer("d_ff", 128, "MLP width")
flags.DEFINE_integer("n_heads", 4, "attention heads")
flags.DEFINE_float("eps", 1e-8, "Adam epsilon of the base and f64 variants")
flags.DEFINE_float("large_eps", 1e-5, "Adam epsilon of the large_eps variant")
flags.DEFINE_list("variants", ["base", "large_eps", "f64"], "base | large_eps | f64")
flags.DEFINE_integer("eval_every", 500, "evaluate accuracy every this many steps (loss and "
                     "norm are logged at every step)", lower_bound=1)
flags.DEFINE_float("factor", 10.0, "spike: loss above factor x running median")
flags.DEFINE_integer("window", 50, "spike: steps in the running median")
flags.DEFINE_float("fit_loss", 1e-2, "spikes are looked for from the first step below this loss")
flags.DEFINE_string("out", "results/slingshot", "output folder")
flags.DEFINE_integer("checkpoint_every", 1000, "checkpoint interval in steps")
flags.DEFINE_bool("resume", False, "continue the variants in --out from their checkpoints")

VARIANTS = ("base", "large_eps", "f64")


def _config(variant):
    from jgrok import presets

    cfg = presets.nanda_preset(steps=FLAGS.steps, p=FLAGS.p, seeds=tuple(range(FLAGS.seeds)),
                               fraction=FLAGS.fraction, lr=FLAGS.lr,
                               weight_decay=FLAGS.weight_decay, d_model=FLAGS.d_model,
                               d_ff=FLAGS.d_ff, n_heads=FLAGS.n_heads, eval_every=FLAGS.eval_every)
    eps = FLAGS.large_eps if variant == "large_eps" else FLAGS.eps
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, name=FLAGS.optimizer,
                                                             eps=eps),
                              train=dataclasses.replace(
                                  cfg.train, checkpoint_every=FLAGS.checkpoint_every))
    cfg.validate()
    return cfg


def main(argv):
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    bad = [v for v in FLAGS.variants if v not in VARIANTS]
    if bad or not FLAGS.variants:
        raise ConfigError(f"--variants: unknown {bad}; known: {', '.join(VARIANTS)}")
    cfgs = {v: _config(v) for v in FLAGS.variants}

    import numpy as np
    import pandas as pd

    from jgrok import tables
    from jgrok import rundir, slingshot
    from jgrok.analysis.spikes import per_step_spikes
    from jgrok.figures import plot_slingshot
    from jgrok.data.algorithmic import make_task
    from jgrok.data.split import dataset_from_task

    dataset = dataset_from_task(make_task("add", FLAGS.p))
    step_frames, eval_frames, spikes, summary = [], [], [], []
    t_all = time.perf_counter()
    for v, cfg in cfgs.items():
        t0 = time.perf_counter()

        def step_log(engine, state, n, f64=(v == "f64")):
            state, losses, norms = slingshot.advance_logged(engine, state, n, float64_loss=f64)
            return state, dict(loss=losses, last_layer_norm=norms)

        sub = os.path.join(FLAGS.out, v)
        df = rundir.run_sweep(cfg, dataset, sub, resume=FLAGS.resume and os.path.exists(
            os.path.join(sub, "config.json")), step_log=step_log, coords=dict(variant=v))
        eval_frames.append(df)
        steps = tables.read_metrics(os.path.join(sub, "steps.csv"), required=("run", "step"))
        wall = time.perf_counter() - t0
        last = df[df.step == df.step.max()].set_index("run")
        for i, g in steps.groupby("run", sort=True):
            loss = g.loss.to_numpy()
            norm = g.last_layer_norm.to_numpy()
            seed = int(g.seed.iloc[0])
            step_frames.append(pd.DataFrame(dict(variant=v, run=i, seed=seed,
                                                 step=g.step.to_numpy(), loss=loss,
                                                 last_layer_norm=norm)))
            rows = [dict(variant=v, run=i, seed=seed, **r) for r in per_step_spikes(
                loss, norm, factor=FLAGS.factor, window=FLAGS.window, fit_loss=FLAGS.fit_loss)]
            spikes += rows
            fit = np.flatnonzero(loss < FLAGS.fit_loss)
            summary.append(dict(variant=v, eps=cfg.optim.eps, run=i, seed=seed,
                                n_spikes=len(rows),
                                max_spike=max((r["size"] for r in rows), default=np.nan),
                                fit_step=float(fit[0]) if fit.size else np.nan,
                                min_loss=float(np.nanmin(loss)), final_loss=float(loss[-1]),
                                final_norm=float(norm[-1]),
                                final_train_acc=float(last.train_acc[i]),
                                final_val_acc=float(last.val_acc[i]), wall_s=wall))
        print(f"{v}: {wall:.0f}s; spikes per seed "
              f"{[s['n_spikes'] for s in summary if s['variant'] == v]}; val_acc "
              f"{np.round(last.val_acc.to_numpy(), 3)}", flush=True)
    steps_df = pd.concat(step_frames, ignore_index=True)
    spikes_df = pd.DataFrame(spikes)
    summary_df = pd.DataFrame(summary)
    tables.write_json(dict(configs={v: c.to_dict() for v, c in cfgs.items()},
                        flags=FLAGS.flag_values_dict(), versions=tables.versions()),
                   os.path.join(FLAGS.out, "config.json"))
    tables.write_csv(steps_df, os.path.join(FLAGS.out, "steps.csv"))
    tables.write_csv(rundir.concat_variants(eval_frames), os.path.join(FLAGS.out, "metrics.csv"))
    tables.write_csv(spikes_df, os.path.join(FLAGS.out, "spikes.csv"))
    tables.write_csv(summary_df, os.path.join(FLAGS.out, "summary.csv"))
    plot_slingshot(steps_df, spikes_df, os.path.join(FLAGS.out, "slingshot.png"), list(cfgs))
    print(f"total {time.perf_counter() - t_all:.0f}s")
    print(summary_df.drop(columns=["wall_s"]).to_string(index=False))
    if len(spikes_df):
        cols = ["variant", "seed", "step", "size", "norm_before", "norm_rate_before",
                "norm_rate_across", "norm_rel_change"]
        print(spikes_df[cols].to_string(index=False))


if __name__ == "__main__":
    cli.run_main(main)

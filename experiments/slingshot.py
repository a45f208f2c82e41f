"""The slingshot effect (Thilak et al. 2022) with a per-step log, and two numerical switches.

    python experiments/slingshot.py --out=results/slingshot

Starts from the preset ``slingshot`` (``jgrok.presets.slingshot_preset``): a small Nanda-style
transformer on ``(x + y) mod 23`` with Adam and NO weight decay, full batch, 3 seeds, 6000
steps; every config flag given (``--p``, ``--steps``, ``--lrs``, ``--weight_decays``,
``--optimizer``, ``--d_model``, ...) overrides it. For each of ``--variants``:

* ``base``: Adam epsilon ``--eps`` (the preset's 1e-8);
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
from common_flags import FLAGS, config_from_flags, memory_limit, refuse_given, variants_from_flag

from jgrok import cli
from jgrok.errors import ConfigError

flags.DEFINE_float("large_eps", 1e-5, "Adam epsilon of the large_eps variant (--eps: the base "
                   "and f64 variants')")
flags.DEFINE_float("factor", 10.0, "spike: loss above factor x running median")
flags.DEFINE_integer("window", 50, "spike: steps in the running median")
flags.DEFINE_float("fit_loss", 1e-2, "spikes are looked for from the first step below this loss")

FLAGS.set_default("preset", "slingshot")
FLAGS.set_default("out", "results/slingshot")
FLAGS.set_default("variants", ["base", "large_eps", "f64"])

VARIANTS = ("base", "large_eps", "f64")


def _config(base, variant):
    eps = FLAGS.large_eps if variant == "large_eps" else base.optim.eps
    cfg = dataclasses.replace(base, optim=dataclasses.replace(base.optim, eps=eps))
    cfg.validate()
    return cfg


def main(argv):
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    refuse_given("coordinator", "figures", why="slingshot.py runs in one process and always "
                 "writes its tables and figure")
    names = variants_from_flag(VARIANTS)
    base = config_from_flags()
    cfgs = {v: _config(base, v) for v in names}

    import numpy as np
    import pandas as pd

    from jgrok import rundir, slingshot, tables
    from jgrok.analysis.spikes import per_step_spikes
    from jgrok.figures import plot_slingshot
    from jgrok.data.algorithmic import make_task
    from jgrok.data.split import dataset_from_task

    dataset = dataset_from_task(make_task(base.task.op, base.task.p))
    cli.enable_compilation_cache(FLAGS.compilation_cache)
    step_frames, eval_frames, spikes, summary = [], [], [], []
    t_all = time.perf_counter()
    n_before = 0  # runs of the earlier variants: every table numbers runs 0.. across variants
    for v, cfg in cfgs.items():
        t0 = time.perf_counter()

        def step_log(engine, state, n, f64=(v == "f64")):
            state, losses, norms = slingshot.advance_logged(engine, state, n, float64_loss=f64)
            return state, dict(loss=losses, last_layer_norm=norms)

        sub = os.path.join(FLAGS.out, v)
        df = rundir.run_sweep(cfg, dataset, sub, resume=FLAGS.resume and os.path.exists(
            os.path.join(sub, "config.json")), step_log=step_log, coords=dict(variant=v),
            memory_limit=memory_limit(), tensorboard=FLAGS.tensorboard)
        eval_frames.append(df)
        steps = tables.read_metrics(os.path.join(sub, "steps.csv"), required=("run", "step"))
        wall = time.perf_counter() - t0
        last = df[df.step == df.step.max()].set_index("run")
        for i, g in steps.groupby("run", sort=True):
            run = n_before + int(i)  # the run's number in metrics.csv (rundir.concat_variants)
            loss = g.loss.to_numpy()
            norm = g.last_layer_norm.to_numpy()
            seed = int(g.seed.iloc[0])
            step_frames.append(pd.DataFrame(dict(variant=v, run=run, seed=seed,
                                                 step=g.step.to_numpy(), loss=loss,
                                                 last_layer_norm=norm)))
            rows = [dict(variant=v, run=run, seed=seed, **r) for r in per_step_spikes(
                loss, norm, factor=FLAGS.factor, window=FLAGS.window, fit_loss=FLAGS.fit_loss)]
            spikes += rows
            fit = np.flatnonzero(loss < FLAGS.fit_loss)
            summary.append(dict(variant=v, eps=cfg.optim.eps, run=run, seed=seed,
                                n_spikes=len(rows),
                                max_spike=max((r["size"] for r in rows), default=np.nan),
                                fit_step=float(fit[0]) if fit.size else np.nan,
                                min_loss=float(np.nanmin(loss)), final_loss=float(loss[-1]),
                                final_norm=float(norm[-1]),
                                final_train_acc=float(last.train_acc[i]),
                                final_val_acc=float(last.val_acc[i]), wall_s=wall))
        n_before += int(df["run"].nunique())
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

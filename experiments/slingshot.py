"""The slingshot effect (Thilak et al. 2022) with a per-step log, and two numerical switches.

    python experiments/slingshot.py --out=results/slingshot

Trains a small Nanda-style transformer (``jgrok.presets.nanda_preset`` with smaller widths) on
``(x + y) mod p`` with Adam and NO weight decay, full batch, for each variant:

* ``base``: Adam epsilon ``--eps`` (1e-8);
* ``large_eps``: Adam epsilon ``--large_eps`` (default 1e-5), Thilak et al.'s remedy;
* ``f64``: epsilon ``--eps`` with the cross-entropy's log-sum-exp in float64
  (``jgrok.slingshot.advance_logged(..., float64_loss=True)``).

Each variant is one vmapped sweep over ``--seeds`` seeds, advanced in chunks of ``--chunk``
steps with ``jgrok.slingshot.advance_logged``, which records the full-batch training loss and the
last-layer norm at EVERY step inside one jitted ``lax.scan``; accuracy is evaluated after every
chunk. Spikes are found in the per-step loss with ``jgrok.analysis.spikes.detect_spikes``
(``--factor`` times the median of the previous ``--window`` steps, from the first step whose
loss is below ``--fit_loss``).

Outputs in ``--out``: ``config.json``, ``steps.csv`` (variant, run, seed, step, loss,
last_layer_norm), ``metrics.csv`` (per-chunk evaluation), ``spikes.csv`` (one row per spike
with the last-layer norm growth before / across it), ``summary.csv`` and ``slingshot.png``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jgrok import cli  # noqa: E402
from jgrok.errors import ConfigError  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("p", 23, "modulus")
flags.DEFINE_float("fraction", 0.5, "training fraction")
flags.DEFINE_integer("steps", 6000, "training steps")
flags.DEFINE_integer("seeds", 3, "number of seeds (0..seeds-1), vmapped")
flags.DEFINE_float("lr", 1e-3, "learning rate")
flags.DEFINE_float("weight_decay", 0.0, "weight decay (slingshot: 0)")
flags.DEFINE_string("optimizer", "adam", "adam | adamw")
flags.DEFINE_integer("d_model", 32, "residual width")
flags.DEFINE_integer("d_ff", 128, "MLP width")
flags.DEFINE_integer("n_heads", 4, "attention heads")
flags.DEFINE_float("eps", 1e-8, "Adam epsilon of the base and f64 variants")
flags.DEFINE_float("large_eps", 1e-5, "Adam epsilon of the large_eps variant")
flags.DEFINE_list("variants", ["base", "large_eps", "f64"], "base | large_eps | f64")
flags.DEFINE_integer("chunk", 500, "steps per jitted scan (and per accuracy evaluation)")
flags.DEFINE_float("factor", 10.0, "spike: loss above factor x running median")
flags.DEFINE_integer("window", 50, "spike: steps in the running median")
flags.DEFINE_float("fit_loss", 1e-2, "spikes are looked for from the first step below this loss")
flags.DEFINE_string("out", "results/slingshot", "output folder")

VARIANTS = ("base", "large_eps", "f64")


def _config(variant):
    from jgrok import presets

    cfg = presets.nanda_preset(steps=FLAGS.steps, p=FLAGS.p, seeds=tuple(range(FLAGS.seeds)),
                               fraction=FLAGS.fraction, lr=FLAGS.lr,
                               weight_decay=FLAGS.weight_decay, d_model=FLAGS.d_model,
                               d_ff=FLAGS.d_ff, n_heads=FLAGS.n_heads, eval_every=FLAGS.chunk)
    eps = FLAGS.large_eps if variant == "large_eps" else FLAGS.eps
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, name=FLAGS.optimizer,
                                                             eps=eps))
    cfg.validate()
    return cfg


def spike_rows(variant, run, seed, loss, norm, steps0=0):
    """Spikes of one run's per-step loss and the last-layer norm around each."""
    import math

    import numpy as np

    from jgrok.analysis.spikes import detect_spikes

    steps = np.arange(loss.size) + steps0
    below = np.flatnonzero(loss < FLAGS.fit_loss)
    if not below.size:
        return []
    fit = float(steps[below[0]])
    rows = []
    w = FLAGS.window
    for sp in detect_spikes(steps, loss, factor=FLAGS.factor, window=w, fit_step=fit):
        s, e = int(sp.step - steps0), int(sp.end_step - steps0)
        before = norm[max(s - 1, 0)]
        earlier = norm[max(s - 1 - w, 0)]
        after = norm[min(e + w, norm.size - 1)]
        rows.append(dict(variant=variant, run=run, seed=seed, fit_step=fit, step=sp.step,
                         peak_step=sp.peak_step, end_step=sp.end_step, size=sp.size,
                         peak_loss=sp.peak_loss, baseline_loss=sp.baseline,
                         norm_before=before,
                         # growth per step over the `window` steps before the spike ...
                         norm_rate_before=(before - earlier) / max(s - 1 - max(s - 1 - w, 0),
                                                                    1),
                         # ... and from just before the spike to `window` steps after its end
                         norm_rate_across=(after - before) / max(min(e + w, norm.size - 1)
                                                                 - (s - 1), 1),
                         norm_after=after,
                         norm_rel_change=(after - before) / before if before else math.nan))
    return rows


def plot(steps_df, spikes, path, variants):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from jgrok import metrics as mio

    colors = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00")
    fig = Figure(figsize=(11, 2.8 * len(variants)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(variants), 2, squeeze=False)
    for r, v in enumerate(variants):
        d = steps_df[steps_df.variant == v]
        for i, (run, g) in enumerate(d.groupby("run")):
            c = colors[i % len(colors)]
            axes[r, 0].plot(g.step, g.loss, color=c, lw=0.6, label=f"seed {g.seed.iloc[0]}")
            axes[r, 1].plot(g.step, g.last_layer_norm, color=c, lw=0.9)
            if len(spikes):
                sp = spikes[(spikes.variant == v) & (spikes.run == run)]
                axes[r, 0].scatter(sp.peak_step, sp.peak_loss, color=c, marker="v", s=14)
                for s in sp.step:
                    axes[r, 1].axvline(s, color=c, lw=0.5, ls=":")
        axes[r, 0].set_yscale("log")
        axes[r, 0].set_ylabel(f"{v}\nfull-batch train loss")
        axes[r, 1].set_ylabel("last-layer norm")
        axes[r, 0].legend(fontsize=7)
        for ax in axes[r]:
            ax.set_xlabel("step")
            ax.spines["top"].set_visible(False)
            ax.spines["right"].set_visible(False)
    axes[0, 0].set_title("per-step loss (triangles: spikes found)", fontsize=9)
    axes[0, 1].set_title("per-step last-layer norm (dotted: spike starts)", fontsize=9)
    fig.tight_layout()
    mio.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=130, format="png"))


def main(argv):
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    bad = [v for v in FLAGS.variants if v not in VARIANTS]
    if bad or not FLAGS.variants:
        raise ConfigError(f"--variants: unknown {bad}; known: {', '.join(VARIANTS)}")
    if FLAGS.chunk < 1 or FLAGS.seeds < 1:
        raise ConfigError("--chunk and --seeds must be >= 1")
    cfgs = {v: _config(v) for v in FLAGS.variants}

    import jax
    import numpy as np
    import pandas as pd

    from jgrok import metrics as mio
    from jgrok import slingshot, sweep
    from jgrok.data.algorithmic import make_task
    from jgrok.data.split import dataset_from_task

    dataset = dataset_from_task(make_task("add", FLAGS.p))
    os.makedirs(FLAGS.out, exist_ok=True)
    mio.write_json(dict(configs={v: c.to_dict() for v, c in cfgs.items()},
                        flags=FLAGS.flag_values_dict(), versions=mio.versions()),
                   os.path.join(FLAGS.out, "config.json"))
    step_frames, eval_rows, spikes, summary = [], [], [], []
    t_all = time.perf_counter()
    for v, cfg in cfgs.items():
        t0 = time.perf_counter()
        engine = sweep.build_engine(cfg, dataset)
        state = sweep.init_state(engine)
        losses, norms = [], []
        step = 0
        while step < FLAGS.steps:
            n = min(FLAGS.chunk, FLAGS.steps - step)
            state, l, nm = slingshot.advance_logged(engine, state, n,
                                                    float64_loss=(v == "f64"))
            losses.append(l)
            norms.append(nm)
            step += n
            m = sweep.evaluate(engine, state)
            eval_rows += [dict(r, variant=v) for r in sweep.metric_rows(engine, step, m)]
        loss = np.concatenate(losses, 1)
        norm = np.concatenate(norms, 1)
        wall = time.perf_counter() - t0
        for i, g in enumerate(engine.grid):
            step_frames.append(pd.DataFrame(dict(variant=v, run=i, seed=g["seed"],
                                                 step=np.arange(FLAGS.steps), loss=loss[i],
                                                 last_layer_norm=norm[i])))
            rows = spike_rows(v, i, g["seed"], loss[i], norm[i])
            spikes += rows
            last = m
            summary.append(dict(variant=v, eps=cfg.optim.eps, run=i, seed=g["seed"],
                                n_spikes=len(rows),
                                max_spike=max((r["size"] for r in rows), default=np.nan),
                                fit_step=rows[0]["fit_step"] if rows else
                                (float(np.flatnonzero(loss[i] < FLAGS.fit_loss)[0])
                                 if (loss[i] < FLAGS.fit_loss).any() else np.nan),
                                min_loss=float(np.nanmin(loss[i])),
                                final_loss=float(loss[i, -1]),
                                final_norm=float(norm[i, -1]),
                                final_train_acc=float(last["train_acc"][i]),
                                final_val_acc=float(last["val_acc"][i]), wall_s=wall))
        print(f"{v}: {wall:.0f}s; spikes per seed "
              f"{[s['n_spikes'] for s in summary if s['variant'] == v]}; val_acc "
              f"{np.round(m['val_acc'], 3)}; devices {jax.devices()}", flush=True)
    steps_df = pd.concat(step_frames, ignore_index=True)
    spikes_df = pd.DataFrame(spikes)
    summary_df = pd.DataFrame(summary)
    mio.write_csv(steps_df, os.path.join(FLAGS.out, "steps.csv"))
    mio.write_csv(pd.DataFrame(eval_rows), os.path.join(FLAGS.out, "metrics.csv"))
    mio.write_csv(spikes_df, os.path.join(FLAGS.out, "spikes.csv"))
    mio.write_csv(summary_df, os.path.join(FLAGS.out, "summary.csv"))
    plot(steps_df, spikes_df, os.path.join(FLAGS.out, "slingshot.png"), list(cfgs))
    print(f"total {time.perf_counter() - t_all:.0f}s")
    print(summary_df.drop(columns=["wall_s"]).to_string(index=False))
    if len(spikes_df):
        cols = ["variant", "seed", "step", "size", "norm_before", "norm_rate_before",
                "norm_rate_across", "norm_rel_change"]
        print(spikes_df[cols].to_string(index=False))


if __name__ == "__main__":
    cli.run_main(main)

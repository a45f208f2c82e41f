"""Nanda et al.'s progress measures over training, several seeds vmapped; or Gromov's IPR.

    python experiments/progress_measures.py --p=53 --steps=4000 --seeds=3 --out=results/progress
    python experiments/progress_measures.py --preset=gromov --out=results/progress/gromov

``--preset=nanda`` (default) trains :func:`jgrok.presets.nanda_preset` (1-layer transformer,
no LayerNorm, full-batch AdamW) at a CPU size (smaller ``p``, the widths kept) and at every
evaluation computes :func:`jgrok.analysis.measures.sweep_progress_measures` (restricted and
excluded loss, Gini of the embedding / unembedding Fourier norms, sum of squared weights, key
frequencies). Key frequencies are chosen at each evaluation from the embedding (columns
``restricted_loss``, ``excluded_loss``, ``key_freqs``) AND, after training, fixed to each run's
final key frequencies and recomputed on the stored weights of every evaluation, as Nanda et al.
plot them (``restricted_loss_final_keys``, ``excluded_loss_final_keys``).

Outputs in ``--out``: ``config.json``, ``metrics.csv`` (the sweep's tidy table plus the measure
columns), ``key_frequencies.md``, ``phases.csv`` and ``progress_measures.png``.

Phase boundaries (per run; ``NaN`` when not reached):

* ``memorized``: first evaluation with training accuracy >= 99% (end of memorisation);
* ``cleanup_start``: first evaluation after ``memorized`` whose test accuracy exceeds the run's
  *commutation share* by 5 points. The commutation share is the fraction of test pairs whose
  swapped pair ``(y, x)`` is a training pair: right after memorisation the transformer answers
  exactly those (test accuracy plateaus there, not at chance 1/p), so a test accuracy above it
  is the first sign of the general algorithm, i.e. of the test loss drop. Circuit formation is
  ``[memorized, cleanup_start)``;
* ``grokked``: first evaluation with test accuracy >= 99% (end of clean-up).

``--preset=gromov`` trains :func:`jgrok.presets.gromov_preset` (quadratic one-hidden-layer MLP on
one-hot inputs, MSE) and writes ``ipr.csv`` (IPR and dominant frequency of each neuron's ``x`` and
``y`` first-layer weights, initial and final), ``ipr_curve.csv`` (mean IPR over training) and
``gromov_ipr.png`` (histograms initial vs final, mean IPR and accuracy over steps).
"""

from __future__ import annotations

import os
import sys
import time

from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jgrok import cli  # noqa: E402
from jgrok.errors import ConfigError  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "nanda", "nanda | gromov")
flags.DEFINE_integer("p", 0, "modulus (0: 53 for nanda, 97 for gromov)")
flags.DEFINE_integer("steps", 0, "training steps (0: 4000 nanda, 3000 gromov)")
flags.DEFINE_integer("seeds", 3, "number of seeds (0..seeds-1), vmapped")
flags.DEFINE_float("fraction", 0.0, "training fraction (0: preset default)")
flags.DEFINE_float("lr", 0.0, "learning rate (0: preset default)")
flags.DEFINE_float("weight_decay", -1.0, "weight decay (-1: preset default)")
flags.DEFINE_integer("d_model", 128, "nanda: residual width")
flags.DEFINE_integer("d_ff", 512, "nanda: MLP width")
flags.DEFINE_integer("width", 512, "gromov: hidden width")
flags.DEFINE_string("variant", "noreg", "gromov: noreg (Adam, wd 0) | adamw")
flags.DEFINE_integer("eval_every", 0, "evaluate every this many steps (0: steps/100)")
flags.DEFINE_integer("n_keys", 3, "number of key frequencies")
flags.DEFINE_string("key_source", "embed", "embed | neurons: how key frequencies are chosen")
flags.DEFINE_string("out", "", "output folder (default results/progress[/gromov])")
flags.DEFINE_bool("replot", False, "nanda: no training; redo phases, table and figure from "
                  "<out>/metrics.csv (same flags as the run)")

MEM_ACC, CLEAN_MARGIN, GROK_ACC = 0.99, 0.05, 0.99


def _first(steps, values, thresh, after=-1):
    import numpy as np

    ok = np.flatnonzero((np.asarray(values) >= thresh) & (np.asarray(steps) >= after))
    return float(steps[ok[0]]) if ok.size else float("nan")


def commutation_share(train_mask, p):
    """Fraction of test pairs (x, y) whose swapped pair (y, x) is a training pair."""
    import numpy as np

    tm = np.asarray(train_mask, bool).reshape(p, p)
    return float((tm.T & ~tm).sum() / max((~tm).sum(), 1))


def phase_boundaries(df, shares):
    """One row per run: memorized, cleanup_start, grokked (rules in the module docstring);
    ``shares[run]`` is the run's commutation share."""
    import math

    import pandas as pd

    rows = []
    for run, g in df.groupby("run"):
        g = g.sort_values("step")
        s = g.step.to_numpy()
        mem = _first(s, g.train_acc.to_numpy(), MEM_ACC)
        clean = (_first(s, g.val_acc.to_numpy(), shares[run] + CLEAN_MARGIN, after=mem)
                 if not math.isnan(mem) else float("nan"))
        rows.append(dict(run=run, seed=int(g.seed.iloc[0]), commutation_share=shares[run],
                         memorized=mem,
                         cleanup_start=clean, grokked=_first(s, g.val_acc.to_numpy(), GROK_ACC)))
    return pd.DataFrame(rows)


def _save(fig, path):
    from jgrok import metrics as mio

    mio.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=130, format="png"))


def _mark_phases(ax, ph):
    import math

    for col, ls in (("memorized", ":"), ("cleanup_start", "--"), ("grokked", "-.")):
        v = ph[col]
        if not math.isnan(v):
            ax.axvline(v, color="k", lw=0.8, ls=ls, alpha=0.7)


def plot_progress(df, phases, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    runs = sorted(df.run.unique())
    fig = Figure(figsize=(13, 2.7 * len(runs)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(runs), 4, squeeze=False)
    for r, run in enumerate(runs):
        g = df[df.run == run].sort_values("step")
        ph = phases[phases.run == run].iloc[0]
        a = axes[r]
        a[0].plot(g.step, g.full_train_loss, label="train loss", color="#0072B2")
        a[0].plot(g.step, g.full_test_loss, label="test loss", color="#D55E00")
        a[1].plot(g.step, g.full_test_loss, color="#D55E00", lw=0.8, alpha=0.5,
                  label="test loss")
        a[1].plot(g.step, g.restricted_loss_final_keys, color="#009E73",
                  label="restricted (final keys)")
        a[1].plot(g.step, g.excluded_loss_final_keys, color="#CC79A7",
                  label="excluded, train (final keys)")
        a[1].plot(g.step, g.restricted_loss, color="#009E73", ls=":", lw=0.9,
                  label="restricted (per-eval keys)")
        a[1].plot(g.step, g.excluded_loss, color="#CC79A7", ls=":", lw=0.9,
                  label="excluded (per-eval keys)")
        a[2].plot(g.step, g.gini_embed, label="Gini W_E", color="#0072B2")
        a[2].plot(g.step, g.gini_unembed, label="Gini W_U", color="#E69F00")
        a[3].plot(g.step, g.sum_sq_weights, color="k", label="sum of squared weights")
        for ax in a[:2]:
            ax.set_yscale("log")
        a[0].set_ylabel(f"seed {int(g.seed.iloc[0])}\nloss")
        a[1].set_ylabel("loss")
        a[2].set_ylabel("Gini of Fourier norms")
        a[3].set_ylabel("sum of squares")
        for ax in a:
            _mark_phases(ax, ph)
            ax.set_xlabel("step")
            ax.spines["top"].set_visible(False)
            ax.spines["right"].set_visible(False)
        if r == 0:
            for ax in a:
                ax.legend(fontsize=6)
            a[0].legend(handles=a[0].get_legend_handles_labels()[0] + [
                Line2D([], [], color="k", ls=":", label="memorized (train acc 99%)"),
                Line2D([], [], color="k", ls="--",
                       label="clean-up start (test acc > commutation share + 5%)"),
                Line2D([], [], color="k", ls="-.", label="grokked (test acc 99%)")],
                fontsize=6)
    fig.tight_layout()
    _save(fig, path)


def _key_table(final, phases, df):
    lines = ["| seed | run | key frequencies (final, embedding) | memorized | clean-up start | "
             "grokked | final test acc |", "|---|---|---|---|---|---|---|"]
    for _, r in final.iterrows():
        ph = phases[phases.run == r.run].iloc[0]
        last = df[(df.run == r.run)].sort_values("step").iloc[-1]
        lines.append(f"| {int(last.seed)} | {int(r.run)} | {r.key_freqs} | {ph.memorized:g} | "
                     f"{ph.cleanup_start:g} | {ph.grokked:g} | {last.val_acc:.3f} |")
    return "\n".join(lines) + "\n"


def _preset_overrides() -> dict:
    """Preset settings that the flags override (unset flags keep the preset's values)."""
    kw = {}
    if FLAGS.fraction:
        kw["fraction"] = FLAGS.fraction
    if FLAGS.lr:
        kw["lr"] = FLAGS.lr
    if FLAGS.weight_decay >= 0:
        kw["weight_decay"] = FLAGS.weight_decay
    return kw


def run_nanda(out):
    import jax
    import numpy as np
    import pandas as pd

    from jgrok import metrics as mio
    from jgrok import presets, sweep
    from jgrok.analysis import measures
    from jgrok.data.algorithmic import make_task
    from jgrok.data.split import dataset_from_task

    p = FLAGS.p or 53
    steps = FLAGS.steps or 4000
    kw = _preset_overrides()
    cfg = presets.nanda_preset(steps=steps, p=p, seeds=tuple(range(FLAGS.seeds)),
                               d_model=FLAGS.d_model, d_ff=FLAGS.d_ff,
                               eval_every=FLAGS.eval_every or max(steps // 100, 1), **kw)
    cfg.validate()
    if FLAGS.key_source not in measures.KEY_SOURCES:
        raise ConfigError(f"--key_source={FLAGS.key_source!r}; known: embed, neurons")
    dataset = dataset_from_task(make_task("add", p))
    engine = sweep.build_engine(cfg, dataset)
    masks = np.asarray(jax.device_get(engine.run_data.train_mask))
    shares = {i: commutation_share(masks[i], p) for i in range(engine.n_runs)}
    if FLAGS.replot:
        df = mio.read_metrics(os.path.join(out, "metrics.csv"))
        final = df[df.step == df.step.max()].sort_values("run")
        df["key_freqs"] = df["key_freqs"].astype(str)
        _report(df, final.assign(key_freqs=final.key_freqs.astype(str)), shares, out)
        return
    mio.write_json(dict(config=cfg.to_dict(), flags=FLAGS.flag_values_dict(),
                        versions=mio.versions()), os.path.join(out, "config.json"))
    print(f"nanda preset: p={p}, {engine.n_runs} runs, {steps} steps, "
          f"eval every {cfg.train.eval_every}; devices {jax.devices()}", flush=True)
    rows, measure_frames, stored = [], [], []
    t0 = time.perf_counter()

    def on_eval(step, state, m):
        rows.extend(sweep.metric_rows(engine, step, m))
        measure_frames.append(measures.sweep_progress_measures(
            engine, state, FLAGS.n_keys, FLAGS.key_source))
        stored.append((step, jax.device_get(state.params)))
        if len(stored) % 10 == 1 or step == steps:
            mf = measure_frames[-1]
            print(f"step {step}: train_acc {m['train_acc'].round(3)} val_acc "
                  f"{m['val_acc'].round(3)} restricted {mf.restricted_loss.round(3).tolist()} "
                  f"keys {mf.key_freqs.tolist()} ({time.perf_counter() - t0:.0f}s)", flush=True)

    state = sweep.init_state(engine)
    state = sweep.run_to_step(engine, state, 0, cfg.train.eval_steps(), on_eval)
    train_s = time.perf_counter() - t0
    # Nanda et al.'s convention: the final model's key frequencies, applied to every checkpoint
    final = measure_frames[-1]
    masks = np.zeros((engine.n_runs, p // 2 + 1), bool)
    for i, ks in enumerate(final.key_freqs):
        masks[i, [int(k) for k in ks.split()]] = True
    fixed = []
    for step, params in stored:
        f = measures.sweep_progress_measures(engine, state, FLAGS.n_keys, freq_masks=masks,
                                             params=engine.shard_runs(params))
        f["step"] = step
        fixed.append(f[["run", "step", "restricted_loss", "excluded_loss"]].rename(
            columns=dict(restricted_loss="restricted_loss_final_keys",
                         excluded_loss="excluded_loss_final_keys")))
    df = pd.DataFrame(rows)
    ms = pd.concat(measure_frames, ignore_index=True)
    df = df.merge(ms, on=["run", "step"]).merge(pd.concat(fixed), on=["run", "step"])
    mio.write_csv(df, os.path.join(out, "metrics.csv"))
    _report(df, final, shares, out)
    print(f"training + per-eval measures {train_s:.0f}s; total {time.perf_counter() - t0:.0f}s")


def _report(df, final, shares, out):
    from jgrok import metrics as mio

    phases = phase_boundaries(df, shares)
    mio.write_csv(phases, os.path.join(out, "phases.csv"))
    table = _key_table(final, phases, df)
    mio.atomic_write(os.path.join(out, "key_frequencies.md"),
                     lambda tmp: open(tmp, "w").write(table))
    plot_progress(df, phases, os.path.join(out, "progress_measures.png"))
    print(phases.to_string(index=False))
    print(table)


def plot_gromov(ipr, curve, path):
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.2))
    FigureCanvasAgg(fig)
    a = fig.subplots(1, 4)
    bins = np.linspace(0, 1, 41)
    for ax, half in zip(a[:2], ("x", "y")):
        for when, color in (("initial", "#999999"), ("final", "#0072B2")):
            v = ipr[ipr.when == when][f"ipr_{half}"]
            ax.hist(v, bins=bins, alpha=0.7, color=color, label=f"{when} (median {v.median():.2f})")
        ax.set_xlabel(f"IPR of neuron's {half}-weights (r=2)")
        ax.set_ylabel("neurons (all seeds)")
        ax.legend(fontsize=7)
    for run, g in curve.groupby("run"):
        a[2].plot(g.step, g.ipr_mean, label=f"seed {int(g.seed.iloc[0])}")
        a[3].plot(g.step, g.val_acc, label=f"test, seed {int(g.seed.iloc[0])}")
        a[3].plot(g.step, g.train_acc, ls=":", color=a[3].lines[-1].get_color())
    a[2].set_ylabel("mean IPR (x and y halves)")
    a[3].set_ylabel("accuracy (dotted: train)")
    for ax in a[2:]:
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    for ax in a:
        ax.spines["top"].set_visible(False)
        ax.spines["right"].set_visible(False)
    fig.tight_layout()
    _save(fig, path)


def run_gromov(out):
    import jax
    import pandas as pd

    from jgrok import metrics as mio
    from jgrok import presets, sweep
    from jgrok.analysis import measures
    from jgrok.data.algorithmic import make_task
    from jgrok.data.split import dataset_from_task

    p = FLAGS.p or 97
    steps = FLAGS.steps or 3000
    kw = _preset_overrides()
    cfg = presets.gromov_preset(steps=steps, p=p, seeds=tuple(range(FLAGS.seeds)),
                                width=FLAGS.width, variant=FLAGS.variant,
                                eval_every=FLAGS.eval_every or max(steps // 100, 1), **kw)
    cfg.validate()
    dataset = dataset_from_task(make_task("add", p))
    engine = sweep.build_engine(cfg, dataset)
    mio.write_json(dict(config=cfg.to_dict(), flags=FLAGS.flag_values_dict(),
                        versions=mio.versions()), os.path.join(out, "config.json"))
    print(f"gromov preset ({FLAGS.variant}): p={p}, width {FLAGS.width}, {engine.n_runs} runs, "
          f"{steps} steps; devices {jax.devices()}", flush=True)
    rows, curve = [], []
    t0 = time.perf_counter()
    state = sweep.init_state(engine)
    initial = measures.sweep_gromov_ipr(engine, state).assign(when="initial")

    def on_eval(step, st, m):
        rows.extend(sweep.metric_rows(engine, step, m))
        ipr = measures.sweep_gromov_ipr(engine, st)
        for run, g in ipr.groupby("run"):
            curve.append(dict(run=run, seed=engine.grid[run]["seed"], step=step,
                              ipr_mean=float((g.ipr_x.mean() + g.ipr_y.mean()) / 2),
                              train_acc=float(m["train_acc"][run]),
                              val_acc=float(m["val_acc"][run])))
        if step % (10 * cfg.train.eval_every) == 0 or step == steps:
            print(f"step {step}: train_acc {m['train_acc'].round(3)} val_acc "
                  f"{m['val_acc'].round(3)} mean IPR {curve[-1]['ipr_mean']:.3f} "
                  f"({time.perf_counter() - t0:.0f}s)", flush=True)

    state = sweep.run_to_step(engine, state, 0, cfg.train.eval_steps(), on_eval)
    final = measures.sweep_gromov_ipr(engine, state).assign(when="final")
    ipr = pd.concat([initial, final], ignore_index=True)
    ipr["seed"] = [engine.grid[r]["seed"] for r in ipr.run]
    curve = pd.DataFrame(curve)
    mio.write_csv(pd.DataFrame(rows), os.path.join(out, "metrics.csv"))
    mio.write_csv(ipr, os.path.join(out, "ipr.csv"))
    mio.write_csv(curve, os.path.join(out, "ipr_curve.csv"))
    plot_gromov(ipr, curve, os.path.join(out, "gromov_ipr.png"))
    f = ipr[ipr.when == "final"]
    i = ipr[ipr.when == "initial"]
    print(f"done in {time.perf_counter() - t0:.0f}s")
    print(f"median IPR initial x {i.ipr_x.median():.3f} y {i.ipr_y.median():.3f}; final x "
          f"{f.ipr_x.median():.3f} y {f.ipr_y.median():.3f}; final neurons with IPR>0.5 "
          f"(x,y): {(f.ipr_x > 0.5).mean():.2f}, {(f.ipr_y > 0.5).mean():.2f}; same dominant "
          f"frequency in x and y: {(f.freq_x == f.freq_y).mean():.2f} (initial "
          f"{(i.freq_x == i.freq_y).mean():.2f})")
    last = pd.DataFrame(rows).sort_values("step").groupby("run").tail(1)
    print(last[["run", "seed", "train_acc", "val_acc", "train_loss", "val_loss"]]
          .to_string(index=False))


def main(argv):
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.preset not in ("nanda", "gromov"):
        raise ConfigError(f"--preset={FLAGS.preset!r}; known: nanda, gromov")
    if FLAGS.seeds < 1:
        raise ConfigError(f"--seeds={FLAGS.seeds} must be >= 1")
    if FLAGS.n_keys < 1:
        raise ConfigError(f"--n_keys={FLAGS.n_keys} must be >= 1")
    out = FLAGS.out or ("results/progress" if FLAGS.preset == "nanda"
                        else "results/progress/gromov")
    os.makedirs(out, exist_ok=True)
    (run_nanda if FLAGS.preset == "nanda" else run_gromov)(out)


if __name__ == "__main__":
    cli.run_main(main)

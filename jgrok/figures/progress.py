"""Figures of the mechanistic measures (``experiments/progress_measures.py``): Nanda et al.'s
progress measures and Gromov's inverse participation ratio."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from jgrok.figures.style import save_figure

def _mark_phases(ax, ph):
    for col, ls in (("memorized", ":"), ("cleanup_start", "--"), ("grokked", "-.")):
        v = ph[col]
        if not math.isnan(v):
            ax.axvline(v, color="k", lw=0.8, ls=ls, alpha=0.7)


def plot_progress_measures(df: pd.DataFrame, phases: pd.DataFrame, path) -> list[str]:
    """Nanda et al.'s progress measures over training, one row of panels per run: train/test
    loss, restricted and excluded loss, Gini of the Fourier norms, sum of squared weights; the
    phase boundaries of `jgrok.analysis.measures.phase_boundaries` as vertical lines."""
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
    return save_figure(fig, path, dpi=130, formats=("png",))


#: Nanda et al.'s three phases: (name, start column, end column, shade colour)
NANDA_PHASES = (("memorization", None, "memorized", "#56B4E9"),
                ("circuit formation", "memorized", "cleanup_start", "#F0E442"),
                ("clean-up", "cleanup_start", "grokked", "#009E73"))
_SEED_STYLES = ("-", "--", ":", "-.")


def _median(phases: pd.DataFrame, col) -> float:
    v = phases[col].to_numpy(float)
    return float(np.median(v[~np.isnan(v)])) if np.any(~np.isnan(v)) else float("nan")


def _shade_phases(ax, phases: pd.DataFrame) -> None:
    """Shade the three phases between the seeds' median boundaries."""
    for name, start, end, color in NANDA_PHASES:
        lo = 0.0 if start is None else _median(phases, start)
        hi = _median(phases, end)
        if not (math.isnan(lo) or math.isnan(hi)) and hi > lo:
            ax.axvspan(lo, hi, color=color, alpha=0.18, lw=0)


def plot_nanda_phases(df: pd.DataFrame, phases: pd.DataFrame, path) -> list[str]:
    """Write `nanda_phases_figure` to `path` (PNG)."""
    return save_figure(nanda_phases_figure(df, phases), path, dpi=130, formats=("png",))


def nanda_phases_figure(df: pd.DataFrame, phases: pd.DataFrame) -> Figure:
    """Nanda et al.'s progress-measure figure: one panel per measure, every seed in each
    (line style by seed), the three phases shaded between the seeds' median boundaries
    (`jgrok.analysis.measures.phase_boundaries`), losses on a log scale, legends above the
    panels. `df` needs the final-key columns of `measures.with_final_key_losses`."""
    panels = (
        ("train and test loss", (("full_train_loss", "train", "#0072B2"),
                                 ("full_test_loss", "test", "#D55E00")), "log"),
        ("excluded loss (train pairs, final keys)",
         (("excluded_loss_final_keys", "excluded", "#CC79A7"),
          ("full_train_loss", "train", "#0072B2")), "log"),
        ("restricted loss (all pairs, final keys)",
         (("restricted_loss_final_keys", "restricted", "#009E73"),
          ("full_test_loss", "test", "#D55E00")), "log"),
        ("Gini of the Fourier norms", (("gini_embed", "W_E", "#0072B2"),
                                       ("gini_unembed", "W_U", "#E69F00")), "linear"),
        ("sum of squared weights", (("sum_sq_weights", "sum of squares", "k"),), "linear"),
        ("accuracy", (("train_acc", "train", "#0072B2"), ("val_acc", "test", "#D55E00")),
         "linear"))
    fig = Figure(figsize=(15, 9))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3).ravel()
    runs = sorted(df.run.unique())
    for ax, (title, curves, scale) in zip(axes, panels):
        _shade_phases(ax, phases)
        for i, run in enumerate(runs):
            g = df[df.run == run].sort_values("step")
            for col, label, color in curves:
                ax.plot(g.step, g[col], color=color, ls=_SEED_STYLES[i % len(_SEED_STYLES)],
                        lw=1.0, label=label if i == 0 else None)
        ax.set_yscale(scale)
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_xlabel("step")
        ax.spines["top"].set_visible(False)
        ax.spines["right"].set_visible(False)
        if len(curves) > 1:  # beside the plot area's top, clear of the curves
            ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2,
                      frameon=False)
    seeds = [Line2D([], [], color="k", ls=_SEED_STYLES[i % len(_SEED_STYLES)], lw=1.0,
                    label=f"seed {int(df[df.run == run].seed.iloc[0])}")
             for i, run in enumerate(runs)]
    shades = [Patch(color=color, alpha=0.3, label=name) for name, _, _, color in NANDA_PHASES]
    fig.legend(handles=seeds + shades, loc="lower center", ncol=len(seeds) + len(shades),
               fontsize=9, frameon=False)
    fig.suptitle("Nanda et al.'s progress measures, (x + y) mod p; shaded: the phases between "
                 "the seeds' median boundaries", fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def plot_gromov_ipr(ipr: pd.DataFrame, curve: pd.DataFrame, path) -> list[str]:
    """Gromov's inverse participation ratio: histograms of the neurons' IPR (x and y halves of
    the first layer) initial vs final, mean IPR and accuracy over training."""
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
    return save_figure(fig, path, dpi=130, formats=("png",))

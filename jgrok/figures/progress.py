"""Figures of the mechanistic measures (``experiments/progress_measures.py``): Nanda et al.'s
progress measures and Gromov's inverse participation ratio."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

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

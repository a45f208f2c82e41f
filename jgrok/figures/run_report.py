"""The figures of a sweep's run directory, drawn from the tables analysis made of it
(`jgrok.analysis.report`): the second half of the path metrics -> tables -> figures."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pandas as pd

from jgrok.figures.curves import plot_accuracy_curves, plot_loss_curves, plot_loss_grid
from jgrok.figures.phase_diagram import plot_phase_diagram, plot_steps_to_generalize

if TYPE_CHECKING:
    from jgrok.analysis.run_report import RunReport


def showcase_run(runs: pd.DataFrame, spikes: pd.DataFrame):
    """The run whose loss the ``loss_spikes`` figure shows: the one with the most spikes, else
    the grokking run with the longest delay, else the first run."""
    if not spikes.empty:
        counts = spikes.groupby("run").size()
        return counts.idxmax()
    grok = runs[runs["phase"] == "grokking"]
    if not grok.empty:
        return grok.loc[grok["delay"].astype(float).idxmax(), "run"]
    return runs["run"].iloc[0]


def draw_report(rep: "RunReport", out_dir) -> list[str]:
    """Draw the tables of `rep` into ``out_dir/figures/``: ``phase_diagram`` (its note names
    the rule), ``steps_to_generalize``, ``accuracy_curves`` and, where the metrics have a
    training loss, ``loss_grid`` and ``loss_spikes`` (:func:`showcase_run`), each as PNG and
    PDF. Returns the written paths."""
    fig_dir = os.path.join(os.fspath(out_dir), "figures")
    os.makedirs(fig_dir, exist_ok=True)
    df, cells = rep.metrics, rep.cells
    paths = plot_phase_diagram(cells, os.path.join(fig_dir, "phase_diagram"),
                               note=f"rule: {rep.thresholds.rule}")
    paths += plot_steps_to_generalize(cells, os.path.join(fig_dir, "steps_to_generalize"))
    paths += plot_accuracy_curves(df, os.path.join(fig_dir, "accuracy_curves"))
    if "train_loss" in df.columns:
        paths += plot_loss_grid(df, os.path.join(fig_dir, "loss_grid"))
        run = showcase_run(rep.runs, rep.spikes)
        paths += plot_loss_curves(df, os.path.join(fig_dir, "loss_spikes"), run,
                                  spikes=rep.spikes)
    return paths

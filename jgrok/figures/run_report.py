"""Every table and figure of a sweep's run directory from its metrics table."""

from __future__ import annotations

import os

import pandas as pd

from jgrok.analysis.phases import (PhaseThresholds, aggregate_cells, classify_table,
                                   write_phase_rule)
from jgrok.analysis.spikes import spikes_table
from jgrok.errors import ConfigError
from jgrok.figures.curves import plot_accuracy_curves, plot_loss_curves, plot_loss_grid
from jgrok.figures.phase_diagram import plot_phase_diagram, plot_steps_to_generalize
from jgrok.figures.style import _require_cols, write_csv_atomic

# ------------------------------------------------------------------------------------ all
def _showcase_run(df: pd.DataFrame, runs: pd.DataFrame, spikes: pd.DataFrame):
    if not spikes.empty:
        counts = spikes.groupby("run").size()
        return counts.idxmax()
    grok = runs[runs["phase"] == "grokking"]
    if not grok.empty:
        return grok.loc[grok["delay"].astype(float).idxmax(), "run"]
    return runs["run"].iloc[0]


def write_all_figures(df, out_dir, thresholds: PhaseThresholds = PhaseThresholds()
                      ) -> list[str]:
    """Classify, aggregate and plot a whole metrics table.

    ``df`` is the metrics DataFrame or a path to ``metrics.csv``. Writes ``phases.csv`` (per
    run), ``cells.csv`` (per cell), ``spikes.csv`` and ``phase_rule.json`` (the thresholds the
    labels follow, :func:`jgrok.analysis.phases.write_phase_rule`) into ``out_dir`` and, into
    ``out_dir/figures/``: ``phase_diagram``, ``steps_to_generalize``, ``accuracy_curves``,
    ``loss_grid`` and ``loss_spikes`` (the run with the most spikes, else the grokking run with
    the longest delay, else the first run), each as PNG and PDF. Returns all written paths.
    """
    if not isinstance(df, pd.DataFrame):
        df = pd.read_csv(df)
    _require_cols(df, ("run", "step", "train_acc", "val_acc"), "metrics table")
    if df.empty:
        raise ConfigError("metrics table has no rows")
    out_dir = os.fspath(out_dir)
    fig_dir = os.path.join(out_dir, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    runs = classify_table(df, thresholds)
    cells = aggregate_cells(runs)
    spikes = (spikes_table(df, thresholds=thresholds) if "train_loss" in df.columns
              else pd.DataFrame())
    paths = [write_csv_atomic(runs, os.path.join(out_dir, "phases.csv")),
             write_csv_atomic(cells, os.path.join(out_dir, "cells.csv")),
             write_csv_atomic(spikes, os.path.join(out_dir, "spikes.csv")),
             write_phase_rule(thresholds, out_dir)]
    paths += plot_phase_diagram(cells, os.path.join(fig_dir, "phase_diagram"),
                                note=f"rule: {thresholds.rule}")
    paths += plot_steps_to_generalize(cells, os.path.join(fig_dir, "steps_to_generalize"))
    paths += plot_accuracy_curves(df, os.path.join(fig_dir, "accuracy_curves"))
    if "train_loss" in df.columns:
        paths += plot_loss_grid(df, os.path.join(fig_dir, "loss_grid"))
        run = _showcase_run(df, runs, spikes)
        paths += plot_loss_curves(df, os.path.join(fig_dir, "loss_spikes"), run,
                                  thresholds=thresholds)
    return paths

"""A sweep's analysis tables from its metrics table, in one call: the first half of the path
metrics -> tables (here) -> figures (`jgrok.figures.draw_report`).

    rep = report(metrics, out_dir, thresholds)   # classify, aggregate, find spikes; write
    figures.draw_report(rep, out_dir)             # draw what the tables hold
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd

from jgrok import tables
from jgrok.analysis.phases import (PhaseThresholds, aggregate_cells, classify_table,
                                   write_phase_rule)
from jgrok.analysis.spikes import spikes_table
from jgrok.schema import metrics_frame

TABLE_FILES = ("phases.csv", "cells.csv", "spikes.csv")
"""The tables :func:`report` writes into a run directory (then ``phase_rule.json``)."""


@dataclass(frozen=True)
class RunReport:
    """The tables of one metrics table: ``runs`` (one row per run, ``phases.csv``), ``cells``
    (one row per grid cell, ``cells.csv``), ``spikes`` (one row per training-loss spike,
    ``spikes.csv``; empty without a ``train_loss`` column), the ``thresholds`` the labels
    follow, and the ``paths`` written (none when no folder was given)."""

    metrics: pd.DataFrame
    runs: pd.DataFrame
    cells: pd.DataFrame
    spikes: pd.DataFrame
    thresholds: PhaseThresholds
    paths: tuple[str, ...] = ()


def report(metrics, out_dir=None,
           thresholds: PhaseThresholds = PhaseThresholds()) -> RunReport:
    """Label every run of `metrics` (a DataFrame or the path of a ``metrics.csv``) under
    `thresholds`, aggregate the grid cells and find the training-loss spikes. With `out_dir`,
    write :data:`TABLE_FILES` and ``phase_rule.json`` (the thresholds,
    :func:`jgrok.analysis.phases.write_phase_rule`) there, each atomically."""
    df = metrics_frame(metrics)
    runs = classify_table(df, thresholds)
    cells = aggregate_cells(runs)
    spikes = (spikes_table(df, thresholds=thresholds) if "train_loss" in df.columns
              else pd.DataFrame())
    paths = ()
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        paths = [os.path.join(out_dir, name) for name in TABLE_FILES]
        for table, path in zip((runs, cells, spikes), paths):
            tables.write_csv(table, path)
        paths = (*paths, write_phase_rule(thresholds, out_dir))
    return RunReport(df, runs, cells, spikes, thresholds, tuple(paths))

"""The tables' contract: the columns of a metrics table and of the phases and cells tables made
from it, reading a metrics table, and checking that a table has the columns a reader needs.
Analysis and figures both read tables through here.

A metrics table's columns come in one order, which every writer uses and every reader relies on:

    run, <coordinates ...>, step, <metrics ...>, diverged, diverged_step, <extra measures ...>

* ``run``: the run's number in its sweep (across variants, in a table of several).
* coordinates: what identifies the run and is constant over its rows, written by
  `jgrok.sweep.metric_rows`: the constant columns a caller names (e.g. ``variant``, ``task``),
  then the grid axes (`jgrok.config.GRID_AXES`: seed, split_seed, fraction, weight_decay, lr,
  init_scale).
* ``step``, then :data:`METRIC_COLUMNS`, then :data:`STATUS_COLUMNS`.
* extra measures: columns an ``on_eval`` hook adds (progress measures, IPR ...).

So the coordinates are exactly the columns between ``run`` and ``step``
(:func:`coordinate_columns`); a measure added after ``step`` is never mistaken for one. A grid
cell is the coordinates minus the seeds (:func:`cell_columns`).

The phases table (`jgrok.analysis.phases.classify_table`) has one row per run: ``run``, its
coordinates, then :data:`RUN_RESULT_COLUMNS`; the cells table
(`jgrok.analysis.phases.aggregate_cells`) one row per cell: the cell's coordinates, then
:data:`CELL_RESULT_COLUMNS`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import pandas as pd

from jgrok.errors import ConfigError

METRIC_COLUMNS = ("train_loss", "train_acc", "val_loss", "val_acc", "param_norm",
                  "last_layer_norm")
"""Per-evaluation measurements of every run (`jgrok.train.evaluate`)."""

STATUS_COLUMNS = ("diverged", "diverged_step")
"""1 once a run's loss or weights became non-finite, and the step at which (-1 while
healthy)."""

SEED_COLUMNS = ("seed", "split_seed")
"""Coordinates that are replicated over; a grid cell is the other coordinates."""

ACCURACY_COLUMNS = ("run", "step", "train_acc", "val_acc")
"""What a metrics table needs for its runs to be labelled (the default of
:func:`read_metrics`)."""

PHASES = ("confusion", "memorization", "grokking", "slow_rise", "comprehension")
"""The five phases, in the order used for plot legends and count strings."""

PHASE_LETTERS = {"confusion": "X", "memorization": "M", "grokking": "G", "slow_rise": "S",
                 "comprehension": "C"}
"""One-letter abbreviations used in cell count strings (``2G 2M``) and figures."""

SHAPE_NAMES = ("two_step", "high_base_late_jump", "slow_rise_then_jump")
"""Names of the mixed-shape flags (`jgrok.analysis.phases.ShapeFlags`)."""

RUN_RESULT_COLUMNS = (
    "phase", "fit_step", "gen_step", "delay", "delay_ratio", "val_acc_at_fit", "plateau",
    "plateau_end_step", *SHAPE_NAMES, "final_train_acc", "final_val_acc", "final_step",
    "n_evals", "diverged")
"""Columns that the phases table adds next to a run's grid coordinates."""

CELL_RESULT_COLUMNS = (
    "n_seeds", *(f"n_{p}" for p in PHASES), *(f"frac_{p}" for p in PHASES), "cell_phase",
    "counts", "majority_phase", "agreement", "n_generalized", "gen_step_median",
    "gen_step_q25", "gen_step_q75", "fit_step_median", "delay_median", "delay_ratio_median",
    "final_val_acc_median", *(f"frac_{s}" for s in SHAPE_NAMES))
"""Columns that the cells table adds next to a cell's coordinates."""


def coordinate_columns(df: pd.DataFrame) -> list[str]:
    """The coordinate columns of a metrics table: those between ``run`` and ``step``. A table
    without that layout (``step`` before ``run``, or either missing) has every column that is
    not ``run``, ``step``, a metric, a status or ``wall_time`` as a coordinate."""
    cols = [str(c) for c in df.columns]
    if "run" in cols and "step" in cols and cols.index("run") < cols.index("step"):
        return cols[cols.index("run") + 1: cols.index("step")]
    other = {"run", "step", "wall_time", *METRIC_COLUMNS, *STATUS_COLUMNS}
    return [c for c in cols if c not in other]


def cell_columns(columns: Sequence[str]) -> list[str]:
    """Coordinates minus the seed columns: what defines a grid cell."""
    return [c for c in columns if c not in SEED_COLUMNS]


def cell_coordinates(cells: pd.DataFrame) -> list[str]:
    """The coordinate columns of a cells table: those that are neither a result nor a seed."""
    result = set(CELL_RESULT_COLUMNS) | {"n_majority"}
    return [c for c in cells.columns if c not in result and c not in SEED_COLUMNS]


def require_columns(df: pd.DataFrame, columns: Sequence[str],
                    what: str = "metrics table") -> None:
    """One `ConfigError` line naming the `columns` that `df` (called `what`) lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError(f"{what} lacks column(s) {', '.join(missing)}")


def read_metrics(path: Union[str, os.PathLike],
                 required: Sequence[str] = ACCURACY_COLUMNS) -> pd.DataFrame:
    """A table written by `jgrok.tables.write_csv`, checked to have the `required` columns (one
    `ConfigError` line otherwise)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"no metrics table at {path}")
    try:
        df = pd.read_csv(path)
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"metrics table {path} is unreadable: {type(e).__name__}: {e}")
    for col in required:
        if col not in df.columns:
            raise ConfigError(f"metrics table {path} has no column {col!r}")
    return df


def metrics_frame(metrics, required: Sequence[str] = ACCURACY_COLUMNS) -> pd.DataFrame:
    """`metrics` (a DataFrame, or the path of a ``metrics.csv``) as a non-empty DataFrame with
    the `required` columns (one `ConfigError` line otherwise)."""
    if not isinstance(metrics, pd.DataFrame):
        metrics = pd.read_csv(metrics)
    require_columns(metrics, required)
    if metrics.empty:
        raise ConfigError("metrics table has no rows")
    return metrics


def format_value(v) -> str:
    """A grid value as a label shows it (floats in %g)."""
    if isinstance(v, (float, np.floating)):
        return f"{v:g}"
    return str(v)

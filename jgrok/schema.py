"""The columns of a metrics table, in the one order every writer uses and every reader relies on.

    run, <coordinates ...>, step, <metrics ...>, diverged, diverged_step, <extra measures ...>

* ``run``: the run's number in its sweep (across variants, in a table of several).
* coordinates: what identifies the run and is constant over its rows, written by
  `jgrok.sweep.metric_rows`: the constant columns a caller names (e.g. ``variant``, ``task``),
  then the grid axes (`jgrok.config.GRID_AXES`: seed, split_seed, fraction, weight_decay, lr,
  init_scale).
* ``step``, then :data:`METRIC_COLUMNS`, then :data:`STATUS_COLUMNS`.
* extra measures: columns an ``on_eval`` hook adds (progress measures, IPR ...).

So the coordinates are exactly the columns between ``run`` and ``step``
(:func:`coordinate_columns`); a measure added after ``step`` is never mistaken for one.
"""

from __future__ import annotations

import pandas as pd

METRIC_COLUMNS = ("train_loss", "train_acc", "val_loss", "val_acc", "param_norm",
                  "last_layer_norm")
"""Per-evaluation measurements of every run (`jgrok.train.evaluate`)."""

STATUS_COLUMNS = ("diverged", "diverged_step")
"""1 once a run's loss or weights became non-finite, and the step at which (-1 while
healthy)."""

SEED_COLUMNS = ("seed", "split_seed")
"""Coordinates that are replicated over; a grid cell is the other coordinates."""


def coordinate_columns(df: pd.DataFrame) -> list[str]:
    """The coordinate columns of a metrics table: those between ``run`` and ``step``. A table
    without that layout (``step`` before ``run``, or either missing) has every column that is
    not ``run``, ``step``, a metric, a status or ``wall_time`` as a coordinate."""
    cols = [str(c) for c in df.columns]
    if "run" in cols and "step" in cols and cols.index("run") < cols.index("step"):
        return cols[cols.index("run") + 1: cols.index("step")]
    other = {"run", "step", "wall_time", *METRIC_COLUMNS, *STATUS_COLUMNS}
    return [c for c in cols if c not in other]

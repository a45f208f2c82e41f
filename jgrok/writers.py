"""Metric writers: back ends for the rows of the metrics table, behind one interface.

A sweep's rows (one dict per run and evaluated step, exactly the rows of metrics.csv) reach each
writer through the `hooks.WriteMetrics` hook:

    begin(rows)        once, with the rows a resumed sweep restored (empty for a new sweep)
    write(step, rows)  after each evaluation, with that step's rows, one per run in run order
    flush()            at each checkpoint (before it is saved) and at the end
    close()            once when the sweep ends (also on an error)

The writers here: `CsvTable` (metrics.csv, always; steps.csv with a per-step logger),
`TensorBoardCells` (per-cell aggregates) and `TensorBoardRuns` (per-run curves), both with
tensorboardX, and `WandbRun` (one Weights & Biases run per sweep, per-run curves grouped by cell,
the full config and each run's grid coordinates as the W&B config). TensorBoard and W&B are
optional dependencies (``pip install -e ".[tensorboard]"``, ``".[wandb]"``); `require` gives the
one-line error of a missing one. To add a writer: subclass `MetricWriter`, override what it
needs, and add it where `rundir.run_sweep` builds its writers (`rundir.metric_writers`).

A cell is a point of the grid without its seeds (`CELL_AXES`); its name joins the axes that vary
in the grid (``frac0.3_alpha10``; ``all`` when none does).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from jgrok import tables
from jgrok.analysis.phases import PhaseThresholds
from jgrok.errors import ConfigError

#: grid coordinates that tell cells apart, with their short names in tags
CELL_AXES = (("fraction", "frac"), ("weight_decay", "wd"), ("lr", "lr"), ("init_scale", "alpha"),
             ("grokfast_lamb", "lamb"), ("grokfast_alpha", "ema"))

#: optional package -> (its flag, the extra that installs it)
OPTIONAL = {"tensorboardX": ("--tensorboard", "tensorboard"), "wandb": ("--wandb", "wandb")}


def require(package: str) -> None:
    """One `ConfigError` line when the optional `package` (`OPTIONAL`) is missing."""
    if importlib.util.find_spec(package) is None:
        flag, extra = OPTIONAL[package]
        raise ConfigError(f"{flag} needs {package}, which is not installed: "
                          f"pip install -e \".[{extra}]\" (or pip install {package})")


def cell_names(grid: list) -> list[str]:
    """Each run's cell name (module docstring), in run order."""
    varying = [(k, short) for k, short in CELL_AXES  # (Grokfast's only where used)
               if len({g.get(k) for g in grid}) > 1]
    return ["_".join(f"{short}{g[k]:g}" for k, short in varying) or "all" for g in grid]


def run_values(row: dict) -> dict:
    """The measured numbers of a row: its columns after ``step`` (metrics, divergence, user
    columns), without the coordinates before it."""
    keys = list(row)
    return {k: row[k] for k in keys[keys.index("step") + 1:]
            if isinstance(row[k], (int, float, np.number)) and not isinstance(row[k], bool)}


class MetricWriter:
    """A back end for the metrics table (module docstring); every method a no-op here."""

    def begin(self, rows: list) -> None:
        pass

    def write(self, step: int, rows: list) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class CsvTable(MetricWriter):
    """A table of `rows` (the sweep's own list, which grows as it trains) rewritten whole and
    atomically at `path` on each flush; `by_run`: ordered by run, then step (a per-step table,
    whose rows come in pieces)."""

    def __init__(self, path, rows: list, by_run: bool = False):
        self.path, self.rows, self.by_run = Path(path), rows, by_run

    def flush(self) -> None:
        df = pd.DataFrame(self.rows)
        if self.by_run and len(df):
            df = df.sort_values(["run", "step"], kind="stable", ignore_index=True)
        tables.write_csv(df, self.path)


class TensorBoardCells(MetricWriter):
    """Per-cell aggregates of each evaluation as TensorBoard scalars under `logdir`.

    Tags ``<cell>/<scalar>``, per cell and step: ``train_acc_mean``, ``train_acc_median``,
    ``val_acc_mean``, ``val_acc_median`` and the shares of its runs ``fitted``, ``generalized``
    and ``diverged``. metrics.csv stays the record; these are for watching a sweep live.
    """

    SCALARS = ("train_acc_mean", "train_acc_median", "val_acc_mean", "val_acc_median", "fitted",
               "generalized", "diverged")

    def __init__(self, logdir, grid: list, thresholds: PhaseThresholds = PhaseThresholds()):
        require("tensorboardX")
        from tensorboardX import SummaryWriter

        self.thresholds = thresholds
        cells: dict = {}
        for i, name in enumerate(cell_names(grid)):
            cells.setdefault(name, []).append(i)
        self.cells = {k: np.asarray(v) for k, v in cells.items()}
        self.writer = SummaryWriter(logdir=str(logdir))

    def write(self, step: int, rows: list) -> None:
        self.add(step, {k: [r[k] for r in rows] for k in ("train_acc", "val_acc", "diverged")})

    def add(self, step: int, metrics: dict) -> None:
        """`metrics`: train_acc, val_acc and diverged per run (as from `sweep.evaluate`)."""
        th = self.thresholds
        train = np.asarray(metrics["train_acc"], np.float64)
        val = np.asarray(metrics["val_acc"], np.float64)
        div = np.asarray(metrics["diverged"]) != 0
        for name, idx in self.cells.items():
            values = dict(train_acc_mean=train[idx].mean(), train_acc_median=np.median(train[idx]),
                          val_acc_mean=val[idx].mean(), val_acc_median=np.median(val[idx]),
                          fitted=np.mean(train[idx] >= th.fit_acc),
                          generalized=np.mean(val[idx] >= th.gen_acc), diverged=div[idx].mean())
            for k in self.SCALARS:
                self.writer.add_scalar(f"{name}/{k}", float(values[k]), int(step))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class TensorBoardRuns(MetricWriter):
    """Each run's measured numbers (`run_values`) as TensorBoard scalars under `logdir`, tagged
    ``<cell>/run_<i>/<column>`` (TensorBoard groups the tags by cell)."""

    def __init__(self, logdir, grid: list):
        require("tensorboardX")
        from tensorboardX import SummaryWriter

        self.cells = cell_names(grid)
        self.writer = SummaryWriter(logdir=str(logdir))

    def write(self, step: int, rows: list) -> None:
        for row in rows:
            i = row["run"]
            for k, v in run_values(row).items():
                self.writer.add_scalar(f"{self.cells[i]}/run_{i}/{k}", float(v), int(step))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbRun(MetricWriter):
    """One Weights & Biases run for the sweep in `<run_dir>/wandb/`: at each evaluation every
    run's measured numbers as ``<cell>/run_<i>/<column>`` (W&B groups the panels by cell), the
    run's grid coordinates under ``runs.run_<i>`` of the W&B config beside `config` (the sweep's
    config.json). A resumed sweep starts a new W&B run that first logs the restored rows, so each
    W&B run holds the whole curves up to where it ends. ``$WANDB_MODE=offline`` writes without
    a network (``wandb sync`` uploads it later)."""

    def __init__(self, run_dir, grid: list, config: dict, project: str,
                 name: Optional[str] = None):
        require("wandb")
        import wandb

        self.cells = cell_names(grid)
        runs = {f"run_{i}": dict(g, cell=c) for i, (g, c) in enumerate(zip(grid, self.cells))}
        self.run = wandb.init(project=project, dir=str(run_dir), name=name or Path(run_dir).name,
                              config=dict(config, runs=runs),
                              settings=wandb.Settings(console="off", silent=True,
                                                      save_code=False))

    def begin(self, rows: list) -> None:
        by_step: dict = {}
        for r in rows:
            by_step.setdefault(r["step"], []).append(r)
        for step in sorted(by_step):
            self.write(step, by_step[step])

    def write(self, step: int, rows: list) -> None:
        self.run.log({f"{self.cells[r['run']]}/run_{r['run']}/{k}": v for r in rows
                      for k, v in run_values(r).items()}, step=int(step))

    def close(self) -> None:
        self.run.finish()

"""The small tables of the Omnigrok / MNIST variant studies.

`summary_table` gives per group the final accuracies, the step at which validation accuracy
first comes within ``tol`` of its final value and the weight norm at the start and the end;
`checkpoint_table` the metrics at chosen steps (render them with
`jgrok.tables.markdown_table`); `variants_report` both as the study's Markdown report.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from jgrok.schema import format_value, require_columns


def first_step_within(steps, values, tol: float = 0.01) -> float:
    """First step at which ``values`` reach their final value minus ``tol``."""
    steps = np.asarray(steps, float)
    values = np.asarray(values, float)
    if values.size == 0:
        return math.nan
    hit = np.flatnonzero(values >= values[-1] - tol)
    return float(steps[hit[0]])


def summary_table(df: pd.DataFrame, keys: Sequence[str] = ("variant", "init_scale"),
                  tol: float = 0.01) -> pd.DataFrame:
    """Per group of ``keys``: seeds, mean final train/val accuracy, median step at which val
    accuracy first reaches its final value - ``tol``, mean weight norm at the first and last
    evaluation, and the number of diverged runs."""
    require_columns(df, ("run", "step", "train_acc", "val_acc", "param_norm", *keys))
    rows = []
    per_run = []
    for _, g in df.groupby("run", sort=True):
        g = g.sort_values("step")
        r = {k: g[k].iloc[0] for k in keys}
        r.update(final_train_acc=g["train_acc"].iloc[-1], final_val_acc=g["val_acc"].iloc[-1],
                 val_settle_step=first_step_within(g["step"], g["val_acc"], tol),
                 norm_start=g["param_norm"].iloc[0], norm_end=g["param_norm"].iloc[-1],
                 diverged=int(g["diverged"].max()) if "diverged" in g else 0)
        per_run.append(r)
    pr = pd.DataFrame(per_run)
    for k, g in pr.groupby(list(keys), sort=False):
        k = k if isinstance(k, tuple) else (k,)
        rows.append(dict(zip(keys, k), n_runs=len(g),
                         final_train_acc=g["final_train_acc"].mean(),
                         final_val_acc=g["final_val_acc"].mean(),
                         val_settle_step=g["val_settle_step"].median(),
                         norm_start=g["norm_start"].mean(), norm_end=g["norm_end"].mean(),
                         diverged=int(g["diverged"].sum())))
    return pd.DataFrame(rows)


def checkpoint_table(df: pd.DataFrame, steps: Sequence[int],
                     metrics: Sequence[str] = ("train_acc", "val_acc", "param_norm")
                     ) -> pd.DataFrame:
    """Mean over runs of ``metrics`` at each of ``steps`` present in the table."""
    require_columns(df, ("step", *metrics))
    sub = df[df["step"].isin(list(steps))]
    return sub.groupby("step", sort=True)[list(metrics)].mean().reset_index()


def variants_report(df: pd.DataFrame, keys: Sequence[str], table_steps: Sequence[int],
                    title: str, extra_md: str = "") -> tuple[pd.DataFrame, str]:
    """The Markdown report of a sweep of variants: a title, the :func:`summary_table` per group
    of ``keys``, ``extra_md``, then per group the :func:`checkpoint_table` at ``table_steps``
    (the course study's format: step x train/test accuracy x weight norm). Returns
    ``(summary, markdown)``."""
    from jgrok.tables import markdown_table

    summary = summary_table(df, keys)
    parts = [f"# {title}\n", "## Summary (mean over seeds; val_settle_step: median step at "
             "which val accuracy first comes within 0.01 of its final value)\n",
             markdown_table(summary, missing="-") + "\n", extra_md]
    for k, g in df.groupby(list(keys), sort=False):
        k = k if isinstance(k, tuple) else (k,)
        label = ", ".join(f"{a}={format_value(b)}" for a, b in zip(keys, k))
        parts.append(f"\n## {label} (mean over {g['run'].nunique()} run(s))\n")
        parts.append(markdown_table(checkpoint_table(g, table_steps), missing="-") + "\n")
    return summary, "\n".join(parts)

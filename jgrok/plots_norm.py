"""Accuracy with the weight norm on a second axis, and the small tables of the Omnigrok / MNIST
variant studies.

`plot_acc_norm` draws, per panel (one per value of the panel keys, e.g. variant x alpha), train
accuracy (dashed) and validation accuracy (solid) against the optimization step on a log axis,
and the global L2 weight norm (dotted, right axis). Curves are medians over seeds. Figures are
written as ``<stem>.png`` and ``<stem>.pdf``, each atomically (`jgrok.plots.save_figure`).

`summary_table` gives per group the final accuracies, the step at which validation accuracy
first comes within ``tol`` of its final value and the weight norm at the start and the end;
and `checkpoint_table` the metrics at chosen steps (render them with
`jgrok.tables.markdown_table`).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from jgrok.errors import ConfigError

_COLORS = ("#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000")
_NORM_COLOR = "#555555"


def _require(df: pd.DataFrame, cols: Sequence[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ConfigError(f"metrics table lacks column(s) {', '.join(missing)}")


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:g}"
    return str(v)


def _groups(df: pd.DataFrame, keys: Sequence[str]):
    keys = [k for k in keys if k in df.columns]
    if not keys:
        return [("all runs", df)]
    out = []
    for k, g in df.groupby(keys, sort=False, dropna=False):
        k = k if isinstance(k, tuple) else (k,)
        out.append((", ".join(f"{a}={_fmt(b)}" for a, b in zip(keys, k)), g))
    return out


def _median(df: pd.DataFrame, col: str):
    g = df.groupby("step")[col].median()
    return g.index.to_numpy(float), g.to_numpy(float)


def plot_acc_norm(df: pd.DataFrame, path, panel_keys: Sequence[str] = ("variant",),
                  line_keys: Sequence[str] = (), title: Optional[str] = None,
                  ncols: int = 3) -> list[str]:
    """Train/val accuracy (left axis) and weight norm (right axis, dotted) vs log step, one
    panel per combination of ``panel_keys``, one colour per combination of ``line_keys``
    (median over the remaining runs). Returns the PNG and PDF paths."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from jgrok.plots import save_figure

    _require(df, ("run", "step", "train_acc", "val_acc", "param_norm"))
    if df.empty:
        raise ConfigError("metrics table is empty; nothing to plot")
    panels = _groups(df, panel_keys)
    n = len(panels)
    ncols = max(1, min(ncols, n))
    nrows = int(math.ceil(n / ncols))
    fig = Figure(figsize=(3.9 * ncols, 2.9 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    line_labels = []
    for ax, (ptitle, pdf_) in zip(axes, panels):
        twin = ax.twinx()
        lines = _groups(pdf_, line_keys) if line_keys else [("", pdf_)]
        for i, (ltitle, ldf) in enumerate(lines):
            color = _COLORS[i % len(_COLORS)]
            for col, ls in (("train_acc", "--"), ("val_acc", "-")):
                s, v = _median(ldf, col)
                m = s > 0
                ax.plot(s[m], v[m], ls=ls, color=color, lw=1.4)
            s, v = _median(ldf, "param_norm")
            m = s > 0
            twin.plot(s[m], v[m], ls=":", color=color if line_keys else _NORM_COLOR, lw=1.6)
            if ltitle and ltitle not in line_labels:
                line_labels.append(ltitle)
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("optimization step", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        twin.set_ylabel("weight norm ||w||", fontsize=8)
        ax.set_title(ptitle, fontsize=8)
        ax.tick_params(labelsize=7)
        twin.tick_params(labelsize=7)
        ax.grid(alpha=0.25, lw=0.5)
    handles = [Line2D([], [], color="k", ls="--", label="train acc"),
               Line2D([], [], color="k", ls="-", label="val acc"),
               Line2D([], [], color=_NORM_COLOR, ls=":", lw=1.6, label="weight norm (right)")]
    handles += [Line2D([], [], color=_COLORS[i % len(_COLORS)], lw=3, label=lab)
                for i, lab in enumerate(line_labels)]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6),
               frameon=False, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


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
    _require(df, ("run", "step", "train_acc", "val_acc", "param_norm", *keys))
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
    _require(df, ("step", *metrics))
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
        label = ", ".join(f"{a}={_fmt(b)}" for a, b in zip(keys, k))
        parts.append(f"\n## {label} (mean over {g['run'].nunique()} run(s))\n")
        parts.append(markdown_table(checkpoint_table(g, table_steps), missing="-") + "\n")
    return summary, "\n".join(parts)

"""Accuracy with the weight norm on a second axis (the Omnigrok / MNIST variant studies).

`plot_acc_norm` draws, per panel (one per value of the panel keys, e.g. variant x alpha), train
accuracy (dashed) and validation accuracy (solid) against the optimization step on a log axis,
and the global L2 weight norm (dotted, right axis). Curves are medians over seeds. Figures are
written as ``<stem>.png`` and ``<stem>.pdf``, each atomically (`jgrok.figures.style.save_figure`).
The study's tables are in `jgrok.analysis.summary`.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import pandas as pd

from jgrok.errors import ConfigError
from jgrok.figures.style import LINE_COLORS, save_figure
from jgrok.schema import format_value, require_columns

_COLORS = LINE_COLORS
_NORM_COLOR = "#555555"


def _groups(df: pd.DataFrame, keys: Sequence[str]):
    keys = [k for k in keys if k in df.columns]
    if not keys:
        return [("all runs", df)]
    out = []
    for k, g in df.groupby(keys, sort=False, dropna=False):
        k = k if isinstance(k, tuple) else (k,)
        out.append((", ".join(f"{a}={format_value(b)}" for a, b in zip(keys, k)), g))
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

    require_columns(df, ("run", "step", "train_acc", "val_acc", "param_norm"))
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

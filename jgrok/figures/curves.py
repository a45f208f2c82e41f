"""Accuracy and loss curves of a sweep's runs over the optimization step."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from matplotlib.lines import Line2D

from jgrok.errors import ConfigError
from jgrok.figures.style import (MAX_LINES, MAX_PANELS, OKABE_ITO, coord_label, draw_legend,
                                 groups_by, new_figure, positive_steps, quantile_band,
                                 save_styled, step_axis, style_axes, varying_columns)
from jgrok.schema import cell_columns, coordinate_columns, require_columns

# ----------------------------------------------------------------------------- accuracy
def _draw_median_acc(ax, sub: pd.DataFrame, color, label: Optional[str]) -> None:
    for col, ls, name in (("train_acc", "--", "train"), ("val_acc", "-", "val")):
        if col not in sub:
            continue
        s, med, lo, hi = quantile_band(sub, col)
        if s.size == 0:
            continue
        m = positive_steps(s)
        ax.plot(s[m], med[m], ls=ls, color=color, lw=1.4,
                label=label if (label and col == "val_acc") else None)
        if sub["run"].nunique() > 1:
            ax.fill_between(s[m], lo[m], hi[m], color=color, alpha=0.18, lw=0)


def plot_accuracy_curves(df: pd.DataFrame, path, run=None) -> list[str]:
    """Train (dashed) and validation (solid) accuracy vs step on a log axis.

    With ``run`` given: that run. Otherwise one curve per grid cell: the median over seeds with
    a 25-75% band (Power et al.). Up to 8 cells share one panel; with more cells, one panel per
    combination of the non-``fraction`` coordinates (at most 16), coloured by ``fraction``.
    """
    require_columns(df, ("run", "step"))
    if run is not None:
        sub = df[df["run"] == run].sort_values("step")
        if sub.empty:
            raise ConfigError(f"run {run} is not in the metrics table")
        fig, (ax,) = new_figure(1, (4.2, 3.0))
        s = sub["step"].to_numpy(dtype=float)
        m = positive_steps(s)
        for col, ls, name, c in (("train_acc", "--", "train", OKABE_ITO[0]),
                                 ("val_acc", "-", "validation", OKABE_ITO[3])):
            if col in sub:
                ax.plot(s[m], sub[col].to_numpy(dtype=float)[m], ls=ls, color=c, lw=1.5,
                        label=name)
        coords = coordinate_columns(df)
        ax.set_title(f"run {run}: " + coord_label(coords, [sub[c].iloc[0] for c in coords]),
                     fontsize=8)
        step_axis(ax, s)
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        draw_legend(ax, loc="best")
        style_axes(ax)
        return save_styled(fig, path)

    cells = cell_columns(coordinate_columns(df))
    varying = varying_columns(df, cells)
    n_cells = len(groups_by(df, varying))
    if n_cells <= MAX_LINES or "fraction" not in varying:
        panel_keys, color_key = [], varying
    else:
        panel_keys, color_key = [c for c in varying if c != "fraction"], ["fraction"]
    panels = groups_by(df, panel_keys)[:MAX_PANELS]
    fig, axes = new_figure(len(panels), (3.6, 2.7) if len(panels) > 1 else (6.4, 3.2))
    for ax, (pkey, pdf_) in zip(axes, panels):
        lines = groups_by(pdf_, color_key)
        if color_key == ["fraction"] and len(lines) > MAX_LINES:
            import matplotlib

            cmap = matplotlib.colormaps["viridis"]
            fr = np.array([k[0] for k, _ in lines], dtype=float)
            norm = (fr - fr.min()) / (np.ptp(fr) or 1.0)
            colors = [cmap(0.9 * v) for v in norm]
        else:
            colors = [OKABE_ITO[i % len(OKABE_ITO)] for i in range(len(lines))]
        for i, ((ckey, sub), color) in enumerate(zip(lines, colors)):
            label = coord_label(color_key, ckey) if color_key else None
            if len(lines) > MAX_LINES and 0 < i < len(lines) - 1:
                label = None
            _draw_median_acc(ax, sub, color, label)
        step_axis(ax, pdf_["step"].to_numpy(dtype=float))
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        if panel_keys:
            ax.set_title(coord_label(panel_keys, pkey))
        style_axes(ax)
    handles = [Line2D([], [], color="k", ls="--", lw=1.2, label="train"),
               Line2D([], [], color="k", ls="-", lw=1.2, label="validation")]
    seen = set()
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in seen:
                seen.add(lab)
                handles.append(h)
    fig.legend(handles=handles, loc="outside right upper", frameon=False, fontsize=7,
               title="median over seeds\n(band: 25-75%)" if df["run"].nunique() > 1 else None,
               title_fontsize=7)
    return save_styled(fig, path)


# --------------------------------------------------------------------------------- losses
def plot_loss_curves(df: pd.DataFrame, path, run,
                     spikes: Optional[pd.DataFrame] = None) -> list[str]:
    """Train and validation loss of one run on log-log axes, its spikes marked, and the
    last-layer norm on a twin axis. ``spikes``: a spikes table
    (`jgrok.analysis.spikes.spikes_table`; the rows of other runs are ignored), or None for no
    marks."""
    require_columns(df, ("run", "step"))
    sub = df[df["run"] == run].sort_values("step")
    if sub.empty:
        raise ConfigError(f"run {run} is not in the metrics table")
    s = sub["step"].to_numpy(dtype=float)
    m = positive_steps(s)
    if spikes is None or spikes.empty:
        spikes = pd.DataFrame(columns=["run", "peak_step", "peak_loss"])
    require_columns(spikes, ("run", "peak_step", "peak_loss"), "spikes table")
    spikes = spikes[spikes["run"] == run]
    fig, (ax,) = new_figure(1, (4.8, 3.2))
    for col, ls, name, c in (("train_loss", "--", "train loss", OKABE_ITO[0]),
                             ("val_loss", "-", "validation loss", OKABE_ITO[3])):
        if col in sub:
            y = sub[col].to_numpy(dtype=float)
            ax.plot(s[m], y[m], ls=ls, color=c, lw=1.4, label=name)
    if "train_loss" in sub:
        y = sub["train_loss"].to_numpy(dtype=float)
        if np.any(np.isfinite(y) & (y > 0)):
            ax.set_yscale("log")
        peaks = [(float(x), float(top))
                 for x, top in zip(spikes["peak_step"], spikes["peak_loss"])
                 if x > 0 or not np.any(s > 0)]
        if peaks:
            xs = [x for x, _ in peaks]
            ys = [top if np.isfinite(top) else float(np.interp(x, s, y)) for x, top in peaks]
            ax.scatter(xs, ys, marker="v", s=28, color="k", zorder=5,
                       label=f"loss spike ({len(peaks)})")
            for x in xs:
                ax.axvline(x, color="k", lw=0.6, ls=":", alpha=0.6)
    step_axis(ax, s)
    ax.set_ylabel("loss")
    handles, labels = ax.get_legend_handles_labels()
    if "last_layer_norm" in sub and sub["last_layer_norm"].notna().any():
        ax2 = ax.twinx()
        ax2.plot(s[m], sub["last_layer_norm"].to_numpy(dtype=float)[m], color=OKABE_ITO[2],
                 lw=1.1, alpha=0.9, label="last-layer norm")
        ax2.set_ylabel("last-layer weight norm")
        ax2.tick_params(labelsize=8)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if handles:
        ax.legend(handles, labels, frameon=False, fontsize=7, loc="best")
    coords = coordinate_columns(df)
    ax.set_title(f"run {run}: " + coord_label(coords, [sub[c].iloc[0] for c in coords]),
                 fontsize=8)
    ax.tick_params(labelsize=8)
    return save_styled(fig, path)


def plot_loss_grid(df: pd.DataFrame, path) -> list[str]:
    """Training loss vs step (log-log), one panel per training fraction, seeds overlaid (other
    swept coordinates coloured when they vary)."""
    require_columns(df, ("run", "step", "train_loss"))
    panel_key = ["fraction"] if "fraction" in df.columns else []
    panels = groups_by(df, panel_key)[:MAX_PANELS]
    cells = cell_columns(coordinate_columns(df))
    other = varying_columns(df, [c for c in cells if c != "fraction"])
    combos = [k for k, _ in groups_by(df, other)]
    color_of = {k: OKABE_ITO[i % len(OKABE_ITO)] for i, k in enumerate(combos)}
    fig, axes = new_figure(len(panels), (3.0, 2.4))
    for ax, (pkey, pdf_) in zip(axes, panels):
        any_pos = False
        for rkey, g in pdf_.groupby("run", sort=True):
            g = g.sort_values("step")
            s = g["step"].to_numpy(dtype=float)
            y = g["train_loss"].to_numpy(dtype=float)
            m = positive_steps(s)
            any_pos |= bool(np.any(np.isfinite(y) & (y > 0)))
            ck = tuple(g[c].iloc[0] for c in other)
            ax.plot(s[m], y[m], color=color_of.get(ck, OKABE_ITO[0]), lw=0.9, alpha=0.7)
        step_axis(ax, pdf_["step"].to_numpy(dtype=float))
        if any_pos:
            ax.set_yscale("log")
        ax.set_ylabel("train loss")
        ax.set_title(coord_label(panel_key, pkey) if panel_key else "all runs")
        style_axes(ax)
    if 1 < len(combos) <= MAX_LINES:
        handles = [Line2D([], [], color=color_of[k], lw=1.2, label=coord_label(other, k))
                   for k in combos]
        axes[0].legend(handles=handles, frameon=False, fontsize=6, loc="best")
    return save_styled(fig, path)

"""Paper-quality figures of a sweep's metrics table.

Every plotting function takes DataFrame(s) and an output path *stem* (a ``.png``/``.pdf``
suffix is dropped), writes ``<stem>.png`` (150 dpi) and ``<stem>.pdf`` atomically (temporary
file in the same folder, then ``os.replace``), and returns the two paths. Figures are built on
``matplotlib.figure.Figure`` with the Agg canvas, so no pyplot global state is touched. Colours
are the Okabe-Ito colour-blind-safe palette; steps are on a log axis (step 0, the
initialisation, cannot be shown on it and is left out unless it is the only step).
"""

from __future__ import annotations

import math
import os
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from jgrok.analysis.phases import (CELL_RESULT_COLUMNS, PHASE_LETTERS, PHASES, SEED_COLUMNS,
                                   PhaseThresholds, aggregate_cells, cell_columns,
                                   classify_table, coordinate_columns)
from jgrok.analysis.phases import first_step_reaching
from jgrok.analysis.spikes import Spike, detect_spikes, spikes_table
from jgrok.errors import ConfigError
from jgrok.tables import atomic_write, write_csv

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
             "#000000")
PHASE_COLORS = {"confusion": "#999999", "memorization": "#D55E00", "grokking": "#E69F00",
                "slow_rise": "#56B4E9", "comprehension": "#009E73"}
_MAX_LINES = 8
_MAX_PANELS = 16
_RC = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 7,
       "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False,
       "axes.spines.right": False}


# ----------------------------------------------------------------------------------- helpers
def _stem(path) -> str:
    path = os.fspath(path)
    root, ext = os.path.splitext(path)
    return root if ext.lower() in (".png", ".pdf") else path


def save_figure(fig: Figure, path, rc: Optional[dict] = None) -> list[str]:
    """Write `fig` as ``<stem>.png`` and ``<stem>.pdf`` (each atomically) and return the two
    paths; `rc`: matplotlib settings in force while saving."""
    stem = _stem(path)
    FigureCanvasAgg(fig)
    out = []
    import matplotlib

    for ext in ("png", "pdf"):
        final = f"{stem}.{ext}"
        with matplotlib.rc_context(rc or {}):
            atomic_write(final, lambda tmp: fig.savefig(tmp, format=ext, dpi=150))
        out.append(final)
        # the layout computed for the PNG holds for the PDF (same size, point-sized text)
        fig.set_layout_engine("none")
    return out


def _save(fig: Figure, path) -> list[str]:
    return save_figure(fig, path, _RC)


def write_csv_atomic(df: pd.DataFrame, path) -> str:
    """Write ``df`` to ``path`` as CSV atomically (`jgrok.tables.write_csv`); returns the
    path."""
    write_csv(df, path)
    return os.fspath(path)


def _new_figure(n_panels: int = 1, panel_size=(3.4, 2.6), ncols: Optional[int] = None):
    import matplotlib

    ncols = ncols or min(n_panels, 4)
    nrows = int(math.ceil(n_panels / ncols))
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows),
                     layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return fig, flat[:n_panels]


def _style(ax) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.tick_params(labelsize=8)
    ax.title.set_fontsize(9)
    ax.xaxis.label.set_fontsize(9)
    ax.yaxis.label.set_fontsize(9)


def _positive_steps(steps: np.ndarray) -> np.ndarray:
    """Mask of points to draw on a log step axis (all points if no step is positive)."""
    pos = steps > 0
    return pos if pos.any() else np.ones_like(pos)


def _step_axis(ax, steps: np.ndarray) -> None:
    if np.any(np.asarray(steps) > 0):
        ax.set_xscale("log")
    ax.set_xlabel("optimization step")


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:g}"
    return str(v)


def _label(keys: Sequence[str], values: Sequence) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in zip(keys, values)) or "all runs"


def _varying(df: pd.DataFrame, cols: Iterable[str]) -> list[str]:
    return [c for c in cols if c in df.columns and df[c].nunique(dropna=False) > 1]


def _groups(df: pd.DataFrame, keys: list[str]):
    if not keys:
        return [((), df)]
    return [((k if isinstance(k, tuple) else (k,)), g)
            for k, g in df.groupby(keys, sort=True, dropna=False)]


def _legend(ax, **kw) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(frameon=False, fontsize=7, **kw)


def _quantile_band(df: pd.DataFrame, col: str):
    """Per step median and 25/75% quantiles of ``col`` over runs."""
    g = df.dropna(subset=[col]).groupby("step")[col]
    q = g.quantile([0.25, 0.5, 0.75]).unstack()
    if q.empty:
        return np.array([]), np.array([]), np.array([]), np.array([])
    return (q.index.to_numpy(dtype=float), q[0.5].to_numpy(), q[0.25].to_numpy(),
            q[0.75].to_numpy())


def _require_cols(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ConfigError(f"{what} lacks column(s) {', '.join(missing)}")


# ----------------------------------------------------------------------------- accuracy
def _draw_median_acc(ax, sub: pd.DataFrame, color, label: Optional[str]) -> None:
    for col, ls, name in (("train_acc", "--", "train"), ("val_acc", "-", "val")):
        if col not in sub:
            continue
        s, med, lo, hi = _quantile_band(sub, col)
        if s.size == 0:
            continue
        m = _positive_steps(s)
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
    _require_cols(df, ("run", "step"), "metrics table")
    if run is not None:
        sub = df[df["run"] == run].sort_values("step")
        if sub.empty:
            raise ConfigError(f"run {run} is not in the metrics table")
        fig, (ax,) = _new_figure(1, (4.2, 3.0))
        s = sub["step"].to_numpy(dtype=float)
        m = _positive_steps(s)
        for col, ls, name, c in (("train_acc", "--", "train", OKABE_ITO[0]),
                                 ("val_acc", "-", "validation", OKABE_ITO[3])):
            if col in sub:
                ax.plot(s[m], sub[col].to_numpy(dtype=float)[m], ls=ls, color=c, lw=1.5,
                        label=name)
        coords = coordinate_columns(df)
        ax.set_title(f"run {run}: " + _label(coords, [sub[c].iloc[0] for c in coords]),
                     fontsize=8)
        _step_axis(ax, s)
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        _legend(ax, loc="best")
        _style(ax)
        return _save(fig, path)

    cells = cell_columns(coordinate_columns(df))
    varying = _varying(df, cells)
    n_cells = len(_groups(df, varying))
    if n_cells <= _MAX_LINES or "fraction" not in varying:
        panel_keys, color_key = [], varying
    else:
        panel_keys, color_key = [c for c in varying if c != "fraction"], ["fraction"]
    panels = _groups(df, panel_keys)[:_MAX_PANELS]
    fig, axes = _new_figure(len(panels), (3.6, 2.7) if len(panels) > 1 else (6.4, 3.2))
    for ax, (pkey, pdf_) in zip(axes, panels):
        lines = _groups(pdf_, color_key)
        if color_key == ["fraction"] and len(lines) > _MAX_LINES:
            import matplotlib

            cmap = matplotlib.colormaps["viridis"]
            fr = np.array([k[0] for k, _ in lines], dtype=float)
            norm = (fr - fr.min()) / (np.ptp(fr) or 1.0)
            colors = [cmap(0.9 * v) for v in norm]
        else:
            colors = [OKABE_ITO[i % len(OKABE_ITO)] for i in range(len(lines))]
        for i, ((ckey, sub), color) in enumerate(zip(lines, colors)):
            label = _label(color_key, ckey) if color_key else None
            if len(lines) > _MAX_LINES and 0 < i < len(lines) - 1:
                label = None
            _draw_median_acc(ax, sub, color, label)
        _step_axis(ax, pdf_["step"].to_numpy(dtype=float))
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        if panel_keys:
            ax.set_title(_label(panel_keys, pkey))
        _style(ax)
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
    return _save(fig, path)


# --------------------------------------------------------------------------------- losses
def plot_loss_curves(df: pd.DataFrame, path, run, spikes: Optional[Sequence[Spike]] = None,
                     thresholds: PhaseThresholds = PhaseThresholds()) -> list[str]:
    """Train and validation loss of one run on log-log axes, spikes marked, and the last-layer
    norm on a twin axis. ``spikes=None`` detects them with :func:`detect_spikes` defaults."""
    _require_cols(df, ("run", "step"), "metrics table")
    sub = df[df["run"] == run].sort_values("step")
    if sub.empty:
        raise ConfigError(f"run {run} is not in the metrics table")
    s = sub["step"].to_numpy(dtype=float)
    m = _positive_steps(s)
    if spikes is None and "train_loss" in sub:
        fit = (first_step_reaching(s, sub["train_acc"].to_numpy(dtype=float), thresholds.fit_acc)
               if "train_acc" in sub else None)
        spikes = detect_spikes(s, sub["train_loss"].to_numpy(dtype=float), fit_step=fit,
                               val_acc=sub["val_acc"].to_numpy(dtype=float)
                               if "val_acc" in sub else None)
    spikes = spikes or []
    fig, (ax,) = _new_figure(1, (4.8, 3.2))
    for col, ls, name, c in (("train_loss", "--", "train loss", OKABE_ITO[0]),
                             ("val_loss", "-", "validation loss", OKABE_ITO[3])):
        if col in sub:
            y = sub[col].to_numpy(dtype=float)
            ax.plot(s[m], y[m], ls=ls, color=c, lw=1.4, label=name)
    if "train_loss" in sub:
        y = sub["train_loss"].to_numpy(dtype=float)
        if np.any(np.isfinite(y) & (y > 0)):
            ax.set_yscale("log")
        peaks = [sp for sp in spikes if sp.peak_step > 0 or not np.any(s > 0)]
        if peaks:
            xs = [sp.peak_step for sp in peaks]
            ys = [sp.peak_loss if np.isfinite(sp.peak_loss)
                  else float(np.interp(sp.peak_step, s, y)) for sp in peaks]
            ax.scatter(xs, ys, marker="v", s=28, color="k", zorder=5,
                       label=f"loss spike ({len(peaks)})")
            for sp in peaks:
                ax.axvline(sp.peak_step, color="k", lw=0.6, ls=":", alpha=0.6)
    _step_axis(ax, s)
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
    ax.set_title(f"run {run}: " + _label(coords, [sub[c].iloc[0] for c in coords]),
                 fontsize=8)
    ax.tick_params(labelsize=8)
    return _save(fig, path)


def plot_loss_grid(df: pd.DataFrame, path) -> list[str]:
    """Training loss vs step (log-log), one panel per training fraction, seeds overlaid (other
    swept coordinates coloured when they vary)."""
    _require_cols(df, ("run", "step", "train_loss"), "metrics table")
    panel_key = ["fraction"] if "fraction" in df.columns else []
    panels = _groups(df, panel_key)[:_MAX_PANELS]
    other = _varying(df, [c for c in cell_columns(coordinate_columns(df)) if c != "fraction"])
    combos = [k for k, _ in _groups(df, other)]
    color_of = {k: OKABE_ITO[i % len(OKABE_ITO)] for i, k in enumerate(combos)}
    fig, axes = _new_figure(len(panels), (3.0, 2.4))
    for ax, (pkey, pdf_) in zip(axes, panels):
        any_pos = False
        for rkey, g in pdf_.groupby("run", sort=True):
            g = g.sort_values("step")
            s = g["step"].to_numpy(dtype=float)
            y = g["train_loss"].to_numpy(dtype=float)
            m = _positive_steps(s)
            any_pos |= bool(np.any(np.isfinite(y) & (y > 0)))
            ck = tuple(g[c].iloc[0] for c in other)
            ax.plot(s[m], y[m], color=color_of.get(ck, OKABE_ITO[0]), lw=0.9, alpha=0.7)
        _step_axis(ax, pdf_["step"].to_numpy(dtype=float))
        if any_pos:
            ax.set_yscale("log")
        ax.set_ylabel("train loss")
        ax.set_title(_label(panel_key, pkey) if panel_key else "all runs")
        _style(ax)
    if 1 < len(combos) <= _MAX_LINES:
        handles = [Line2D([], [], color=color_of[k], lw=1.2, label=_label(other, k))
                   for k in combos]
        axes[0].legend(handles=handles, frameon=False, fontsize=6, loc="best")
    return _save(fig, path)


# ---------------------------------------------------------------------------- cell plots
def _cell_coords(cells: pd.DataFrame) -> list[str]:
    result = set(CELL_RESULT_COLUMNS) | {"n_majority"}
    return [c for c in cells.columns if c not in result and c not in SEED_COLUMNS]


def _axes_keys(cells: pd.DataFrame):
    coords = _cell_coords(cells)
    varying = _varying(cells, coords)
    x = "fraction" if "fraction" in coords else (varying[0] if varying else None)
    rest = [c for c in varying if c != x]
    y = next((c for c in ("weight_decay", "lr") if c in rest), rest[0] if rest else None)
    facets = [c for c in rest if c != y]
    return x, y, facets


def _cell_phase_counts(r: pd.Series) -> list[tuple[str, int]]:
    """(phase, runs) of one cell row, in PHASES order, phases with no run left out."""
    if all(f"n_{p}" in r for p in PHASES):
        return [(p, int(r[f"n_{p}"])) for p in PHASES if int(r[f"n_{p}"]) > 0]
    n = int(r["n_seeds"])
    return [(p, int(round(float(r[f"frac_{p}"]) * n))) for p in PHASES
            if f"frac_{p}" in r and float(r[f"frac_{p}"]) > 0]


def plot_phase_diagram(cells: pd.DataFrame, path, note: str = "") -> list[str]:
    """Phase diagram: training fraction on x, a second swept coordinate (``weight_decay``, else
    ``lr``, else another) on y when one varies (else a one-row strip); further varying
    coordinates give one panel each.

    A cell whose runs all agree is filled with that phase's colour and labelled ``n/n``. A cell
    whose runs disagree is *mixed*: split into vertical stripes, one per phase, as wide as its
    share of the runs, and labelled with the counts (``2G 2M``); it is never coloured as one
    phase. Below the counts, ``v`` is the median final validation accuracy of the cell, so
    near-misses (memorization at 0.97) are visible. ``note`` (e.g. the rule) goes under the
    legend."""
    _require_cols(cells, ("n_seeds",), "cell table")
    x, y, facets = _axes_keys(cells)
    panels = _groups(cells, facets)[:_MAX_PANELS]
    xs = sorted(cells[x].dropna().unique()) if x else [None]
    if y and not pd.api.types.is_numeric_dtype(cells[y]):
        ys = list(dict.fromkeys(cells[y].dropna()))[::-1]  # table order, first row on top
    else:
        ys = sorted(cells[y].dropna().unique()) if y else [None]
    w = min(max(0.62 * len(xs) + 2.2, 5.0), 11.0)
    h = min(0.55 * len(ys) + 1.4, 8.0)
    fig, axes = _new_figure(len(panels), (w, h), ncols=min(len(panels), 3))
    small = len(xs) > 9
    for ax, (fkey, sub) in zip(axes, panels):
        for _, r in sub.iterrows():
            if (x and pd.isna(r[x])) or (y and pd.isna(r[y])):
                continue
            i = xs.index(r[x]) if x else 0
            j = ys.index(r[y]) if y else 0
            parts = _cell_phase_counts(r)
            n = max(sum(k for _, k in parts), 1)
            left = i - 0.5
            for phase, k in parts:
                ax.add_patch(Rectangle((left, j - 0.5), k / n, 1,
                                       facecolor=PHASE_COLORS.get(phase, "white"),
                                       edgecolor="none", lw=0))
                left += k / n
            mixed = len(parts) > 1
            ax.add_patch(Rectangle((i - 0.5, j - 0.5), 1, 1, facecolor="none",
                                   edgecolor="black" if mixed else "white",
                                   lw=1.2 if mixed else 1.0, hatch="//" if mixed else None))
            label = " ".join(f"{k}{PHASE_LETTERS.get(p, p)}" for p, k in
                             sorted(parts, key=lambda t: -t[1])) if mixed else f"{n}/{n}"
            v = r.get("final_val_acc_median", np.nan)
            if v is not None and np.isfinite(v):
                label += f"\nv {v:.2f}"
            ax.text(i, j, label, ha="center", va="center", fontsize=5.5 if small else 6.5,
                    color="black", bbox=dict(boxstyle="round,pad=0.12", fc="white", ec="none",
                                             alpha=0.75) if mixed else None)
        ax.set_xlim(-0.5, len(xs) - 0.5)
        ax.set_ylim(-0.5, len(ys) - 0.5)
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels([_fmt(v) for v in xs], rotation=45 if len(xs) > 6 else 0)
        ax.set_xlabel("training fraction" if x == "fraction" else (x or ""))
        ax.set_yticks(range(len(ys)))
        if y:
            ax.set_yticklabels([_fmt(v) for v in ys])
            ax.set_ylabel({"weight_decay": "weight decay", "lr": "learning rate",
                           "op": "operation"}.get(y, y))
        else:
            ax.set_yticklabels([])
            ax.tick_params(axis="y", length=0)
        if facets:
            ax.set_title(_label(facets, fkey))
        _style(ax)
    handles = [Patch(facecolor=PHASE_COLORS[p], label=f"{PHASE_LETTERS[p]}  {p}")
               for p in PHASES]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="//",
                         label="mixed (stripes:\nshare of seeds)"))
    title = "phase of the runs\nn/n: all seeds agree\nv: median final val acc"
    if note:
        title += "\n" + note
    fig.legend(handles=handles, loc="outside right upper", frameon=False, fontsize=6.5,
               title=title, title_fontsize=6.5, alignment="left")
    return _save(fig, path)


def plot_steps_to_generalize(cells: pd.DataFrame, path) -> list[str]:
    """Median steps to reach the generalization threshold vs training fraction (log y), with
    25-75% quartile error bars over seeds that generalized; one line per combination of the
    other swept coordinates (Power et al.'s data-efficiency plot)."""
    _require_cols(cells, ("gen_step_median", "gen_step_q25", "gen_step_q75"), "cell table")
    coords = _cell_coords(cells)
    x = "fraction" if "fraction" in coords else (_varying(cells, coords) or [None])[0]
    others = [c for c in _varying(cells, coords) if c != x]
    fig, (ax,) = _new_figure(1, (4.4, 3.2))
    lines = _groups(cells, others)
    drawn = 0
    for i, (key, sub) in enumerate(lines[:_MAX_LINES * 2]):
        sub = sub.dropna(subset=["gen_step_median"])
        if x:
            sub = sub.sort_values(x)
        if sub.empty:
            continue
        xv = sub[x].to_numpy(dtype=float) if x else np.zeros(len(sub))
        med = sub["gen_step_median"].to_numpy(dtype=float)
        err = np.vstack([np.clip(med - sub["gen_step_q25"].to_numpy(dtype=float), 0, None),
                         np.clip(sub["gen_step_q75"].to_numpy(dtype=float) - med, 0, None)])
        ax.errorbar(xv, med, yerr=err, color=OKABE_ITO[i % len(OKABE_ITO)], marker="o",
                    ms=3.5, lw=1.3, capsize=2.5, label=_label(others, key) if others else None)
        drawn += 1
    if drawn and np.nanmin(cells["gen_step_median"].to_numpy(dtype=float)) > 0:
        ax.set_yscale("log")
    if not drawn:
        ax.text(0.5, 0.5, "no run generalized", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
    ax.set_xlabel("training fraction" if x == "fraction" else (x or ""))
    ax.set_ylabel("steps to generalize (median over seeds)")
    _legend(ax, loc="best")
    _style(ax)
    return _save(fig, path)


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
    run), ``cells.csv`` (per cell) and ``spikes.csv`` into ``out_dir`` and, into
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
             write_csv_atomic(spikes, os.path.join(out_dir, "spikes.csv"))]
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


__all__ = ["plot_accuracy_curves", "plot_loss_curves", "plot_loss_grid", "plot_phase_diagram",
           "plot_steps_to_generalize", "write_all_figures", "write_csv_atomic",
           "PHASE_COLORS", "OKABE_ITO"]


def plot_slingshot(steps_df: pd.DataFrame, spikes: pd.DataFrame, path, variants) -> None:
    """The slingshot figure (``experiments/slingshot.py``): per variant, the per-step training
    loss of every run (log scale; triangles at the spikes' peaks) and its last-layer norm
    (dotted lines where the spikes start)."""
    colors = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00")
    fig = Figure(figsize=(11, 2.8 * len(variants)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(variants), 2, squeeze=False)
    for r, v in enumerate(variants):
        d = steps_df[steps_df.variant == v]
        for i, (run, g) in enumerate(d.groupby("run")):
            c = colors[i % len(colors)]
            axes[r, 0].plot(g.step, g.loss, color=c, lw=0.6, label=f"seed {g.seed.iloc[0]}")
            axes[r, 1].plot(g.step, g.last_layer_norm, color=c, lw=0.9)
            if len(spikes):
                sp = spikes[(spikes.variant == v) & (spikes.run == run)]
                axes[r, 0].scatter(sp.peak_step, sp.peak_loss, color=c, marker="v", s=14)
                for s in sp.step:
                    axes[r, 1].axvline(s, color=c, lw=0.5, ls=":")
        axes[r, 0].set_yscale("log")
        axes[r, 0].set_ylabel(f"{v}\nfull-batch train loss")
        axes[r, 1].set_ylabel("last-layer norm")
        axes[r, 0].legend(fontsize=7)
        for ax in axes[r]:
            ax.set_xlabel("step")
            ax.spines["top"].set_visible(False)
            ax.spines["right"].set_visible(False)
    axes[0, 0].set_title("per-step loss (triangles: spikes found)", fontsize=9)
    axes[0, 1].set_title("per-step last-layer norm (dotted: spike starts)", fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=130, format="png"))


def _mark_phases(ax, ph):
    for col, ls in (("memorized", ":"), ("cleanup_start", "--"), ("grokked", "-.")):
        v = ph[col]
        if not math.isnan(v):
            ax.axvline(v, color="k", lw=0.8, ls=ls, alpha=0.7)


def plot_progress_measures(df: pd.DataFrame, phases: pd.DataFrame, path) -> None:
    """Nanda et al.'s progress measures over training, one row of panels per run: train/test
    loss, restricted and excluded loss, Gini of the Fourier norms, sum of squared weights; the
    phase boundaries of `jgrok.analysis.measures.phase_boundaries` as vertical lines."""
    runs = sorted(df.run.unique())
    fig = Figure(figsize=(13, 2.7 * len(runs)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(runs), 4, squeeze=False)
    for r, run in enumerate(runs):
        g = df[df.run == run].sort_values("step")
        ph = phases[phases.run == run].iloc[0]
        a = axes[r]
        a[0].plot(g.step, g.full_train_loss, label="train loss", color="#0072B2")
        a[0].plot(g.step, g.full_test_loss, label="test loss", color="#D55E00")
        a[1].plot(g.step, g.full_test_loss, color="#D55E00", lw=0.8, alpha=0.5,
                  label="test loss")
        a[1].plot(g.step, g.restricted_loss_final_keys, color="#009E73",
                  label="restricted (final keys)")
        a[1].plot(g.step, g.excluded_loss_final_keys, color="#CC79A7",
                  label="excluded, train (final keys)")
        a[1].plot(g.step, g.restricted_loss, color="#009E73", ls=":", lw=0.9,
                  label="restricted (per-eval keys)")
        a[1].plot(g.step, g.excluded_loss, color="#CC79A7", ls=":", lw=0.9,
                  label="excluded (per-eval keys)")
        a[2].plot(g.step, g.gini_embed, label="Gini W_E", color="#0072B2")
        a[2].plot(g.step, g.gini_unembed, label="Gini W_U", color="#E69F00")
        a[3].plot(g.step, g.sum_sq_weights, color="k", label="sum of squared weights")
        for ax in a[:2]:
            ax.set_yscale("log")
        a[0].set_ylabel(f"seed {int(g.seed.iloc[0])}\nloss")
        a[1].set_ylabel("loss")
        a[2].set_ylabel("Gini of Fourier norms")
        a[3].set_ylabel("sum of squares")
        for ax in a:
            _mark_phases(ax, ph)
            ax.set_xlabel("step")
            ax.spines["top"].set_visible(False)
            ax.spines["right"].set_visible(False)
        if r == 0:
            for ax in a:
                ax.legend(fontsize=6)
            a[0].legend(handles=a[0].get_legend_handles_labels()[0] + [
                Line2D([], [], color="k", ls=":", label="memorized (train acc 99%)"),
                Line2D([], [], color="k", ls="--",
                       label="clean-up start (test acc > commutation share + 5%)"),
                Line2D([], [], color="k", ls="-.", label="grokked (test acc 99%)")],
                fontsize=6)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=130, format="png"))


def plot_gromov_ipr(ipr: pd.DataFrame, curve: pd.DataFrame, path) -> None:
    """Gromov's inverse participation ratio: histograms of the neurons' IPR (x and y halves of
    the first layer) initial vs final, mean IPR and accuracy over training."""
    fig = Figure(figsize=(12, 3.2))
    FigureCanvasAgg(fig)
    a = fig.subplots(1, 4)
    bins = np.linspace(0, 1, 41)
    for ax, half in zip(a[:2], ("x", "y")):
        for when, color in (("initial", "#999999"), ("final", "#0072B2")):
            v = ipr[ipr.when == when][f"ipr_{half}"]
            ax.hist(v, bins=bins, alpha=0.7, color=color, label=f"{when} (median {v.median():.2f})")
        ax.set_xlabel(f"IPR of neuron's {half}-weights (r=2)")
        ax.set_ylabel("neurons (all seeds)")
        ax.legend(fontsize=7)
    for run, g in curve.groupby("run"):
        a[2].plot(g.step, g.ipr_mean, label=f"seed {int(g.seed.iloc[0])}")
        a[3].plot(g.step, g.val_acc, label=f"test, seed {int(g.seed.iloc[0])}")
        a[3].plot(g.step, g.train_acc, ls=":", color=a[3].lines[-1].get_color())
    a[2].set_ylabel("mean IPR (x and y halves)")
    a[3].set_ylabel("accuracy (dotted: train)")
    for ax in a[2:]:
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    for ax in a:
        ax.spines["top"].set_visible(False)
        ax.spines["right"].set_visible(False)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=130, format="png"))

"""Per-cell figures: the phase diagram and the steps to generalize."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.patches import Patch, Rectangle

from jgrok.figures.style import (MAX_LINES, MAX_PANELS, OKABE_ITO, PHASE_COLORS, coord_label,
                                 draw_legend, groups_by, new_figure, save_styled, style_axes,
                                 varying_columns)
from jgrok.schema import PHASE_LETTERS, PHASES, cell_coordinates, format_value, require_columns

# ---------------------------------------------------------------------------- cell plots
def _axes_keys(cells: pd.DataFrame):
    coords = cell_coordinates(cells)
    varying = varying_columns(cells, coords)
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
    require_columns(cells, ("n_seeds",), "cell table")
    x, y, facets = _axes_keys(cells)
    panels = groups_by(cells, facets)[:MAX_PANELS]
    xs = sorted(cells[x].dropna().unique()) if x else [None]
    if y and not pd.api.types.is_numeric_dtype(cells[y]):
        ys = list(dict.fromkeys(cells[y].dropna()))[::-1]  # table order, first row on top
    else:
        ys = sorted(cells[y].dropna().unique()) if y else [None]
    w = min(max(0.62 * len(xs) + 2.2, 5.0), 11.0)
    h = min(0.55 * len(ys) + 1.4, 8.0)
    fig, axes = new_figure(len(panels), (w, h), ncols=min(len(panels), 3))
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
        ax.set_xticklabels([format_value(v) for v in xs], rotation=45 if len(xs) > 6 else 0)
        ax.set_xlabel("training fraction" if x == "fraction" else (x or ""))
        ax.set_yticks(range(len(ys)))
        if y:
            ax.set_yticklabels([format_value(v) for v in ys])
            ax.set_ylabel({"weight_decay": "weight decay", "lr": "learning rate",
                           "op": "operation"}.get(y, y))
        else:
            ax.set_yticklabels([])
            ax.tick_params(axis="y", length=0)
        if facets:
            ax.set_title(coord_label(facets, fkey))
        style_axes(ax)
    handles = [Patch(facecolor=PHASE_COLORS[p], label=f"{PHASE_LETTERS[p]}  {p}")
               for p in PHASES]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="//",
                         label="mixed (stripes:\nshare of seeds)"))
    title = "phase of the runs\nn/n: all seeds agree\nv: median final val acc"
    if note:
        title += "\n" + note
    fig.legend(handles=handles, loc="outside right upper", frameon=False, fontsize=6.5,
               title=title, title_fontsize=6.5, alignment="left")
    return save_styled(fig, path)


def plot_steps_to_generalize(cells: pd.DataFrame, path) -> list[str]:
    """Median steps to reach the generalization threshold vs training fraction (log y), with
    25-75% quartile error bars over seeds that generalized; one line per combination of the
    other swept coordinates (Power et al.'s data-efficiency plot)."""
    require_columns(cells, ("gen_step_median", "gen_step_q25", "gen_step_q75"), "cell table")
    coords = cell_coordinates(cells)
    x = "fraction" if "fraction" in coords else (varying_columns(cells, coords) or [None])[0]
    others = [c for c in varying_columns(cells, coords) if c != x]
    fig, (ax,) = new_figure(1, (4.4, 3.2))
    lines = groups_by(cells, others)
    drawn = 0
    for i, (key, sub) in enumerate(lines[:MAX_LINES * 2]):
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
                    ms=3.5, lw=1.3, capsize=2.5, label=coord_label(others, key) if others else None)
        drawn += 1
    if drawn and np.nanmin(cells["gen_step_median"].to_numpy(dtype=float)) > 0:
        ax.set_yscale("log")
    if not drawn:
        ax.text(0.5, 0.5, "no run generalized", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
    ax.set_xlabel("training fraction" if x == "fraction" else (x or ""))
    ax.set_ylabel("steps to generalize (median over seeds)")
    draw_legend(ax, loc="best")
    style_axes(ax)
    return save_styled(fig, path)

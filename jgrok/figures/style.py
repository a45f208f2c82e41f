"""The one style of jgrok's figures and the one way they are written.

`save_figure` writes every figure of the package: ``<stem>.png`` and ``<stem>.pdf`` by
default (150 dpi), each atomically (temporary file in the same folder, then ``os.replace``).
Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, so no pyplot global
state is touched. Colours are the Okabe-Ito colour-blind-safe palette; steps are on a log axis
(step 0, the initialisation, cannot be shown on it and is left out unless it is the only
step). The helpers below (`new_figure`, `step_axis`, `groups_by`, `coord_label`, ...) are
shared by the figure modules.
"""

from __future__ import annotations

import math
import os
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jgrok.schema import format_value
from jgrok.tables import atomic_write

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
             "#000000")
PHASE_COLORS = {"confusion": "#999999", "memorization": "#D55E00", "grokking": "#E69F00",
                "slow_rise": "#56B4E9", "comprehension": "#009E73"}
#: the colours of the per-run line figures (slingshot, acc_norm), in their order
LINE_COLORS = ("#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000")
MAX_LINES = 8
MAX_PANELS = 16
_RC = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 7,
       "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False,
       "axes.spines.right": False}


# ----------------------------------------------------------------------------------- helpers
def _stem(path) -> str:
    path = os.fspath(path)
    root, ext = os.path.splitext(path)
    return root if ext.lower() in (".png", ".pdf") else path


def save_figure(fig: Figure, path, rc: Optional[dict] = None, dpi: int = 150,
                formats: Sequence[str] = ("png", "pdf")) -> list[str]:
    """Write `fig` as ``<stem>.<format>`` for each of `formats` (each atomically) and return
    the paths; `rc`: matplotlib settings in force while saving. Every figure of jgrok is
    written here."""
    stem = _stem(path)
    FigureCanvasAgg(fig)
    out = []
    import matplotlib

    for ext in formats:
        final = f"{stem}.{ext}"
        with matplotlib.rc_context(rc or {}):
            # no creation date in a PDF: the same figure gives the same bytes when redrawn
            meta = {"CreationDate": None} if ext == "pdf" else None
            atomic_write(final, lambda tmp: fig.savefig(tmp, format=ext, dpi=dpi,
                                                        metadata=meta))
        out.append(final)
        # the layout computed for the PNG holds for the PDF (same size, point-sized text)
        fig.set_layout_engine("none")
    return out


def save_styled(fig: Figure, path) -> list[str]:
    """`save_figure` in this module's style (font sizes, no top and right spines)."""
    return save_figure(fig, path, _RC)


def new_figure(n_panels: int = 1, panel_size=(3.4, 2.6), ncols: Optional[int] = None):
    """A figure of `n_panels` axes of `panel_size` inches, `ncols` (at most 4) a row; returns
    ``(figure, [axes])``, the unused axes of the last row hidden."""
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


def style_axes(ax) -> None:
    """No top and right spines, this module's font sizes."""
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.tick_params(labelsize=8)
    ax.title.set_fontsize(9)
    ax.xaxis.label.set_fontsize(9)
    ax.yaxis.label.set_fontsize(9)


def positive_steps(steps: np.ndarray) -> np.ndarray:
    """Mask of points to draw on a log step axis (all points if no step is positive)."""
    pos = steps > 0
    return pos if pos.any() else np.ones_like(pos)


def step_axis(ax, steps: np.ndarray) -> None:
    """A log step axis where any step is positive, labelled."""
    if np.any(np.asarray(steps) > 0):
        ax.set_xscale("log")
    ax.set_xlabel("optimization step")


def coord_label(keys: Sequence[str], values: Sequence) -> str:
    """``fraction=0.3, weight_decay=1`` (``all runs`` without keys)."""
    return ", ".join(f"{k}={format_value(v)}" for k, v in zip(keys, values)) or "all runs"


def varying_columns(df: pd.DataFrame, cols: Iterable[str]) -> list[str]:
    """The columns of `cols` in `df` that take more than one value."""
    return [c for c in cols if c in df.columns and df[c].nunique(dropna=False) > 1]


def groups_by(df: pd.DataFrame, keys: list[str]):
    """``[(key tuple, rows)]`` of `df` grouped by `keys`, sorted; ``[((), df)]`` without keys."""
    if not keys:
        return [((), df)]
    return [((k if isinstance(k, tuple) else (k,)), g)
            for k, g in df.groupby(keys, sort=True, dropna=False)]


def draw_legend(ax, **kw) -> None:
    """The axes' legend, where anything is labelled."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(frameon=False, fontsize=7, **kw)


def quantile_band(df: pd.DataFrame, col: str):
    """Per step median and 25/75% quantiles of ``col`` over runs."""
    g = df.dropna(subset=[col]).groupby("step")[col]
    q = g.quantile([0.25, 0.5, 0.75]).unstack()
    if q.empty:
        return np.array([]), np.array([]), np.array([]), np.array([])
    return (q.index.to_numpy(dtype=float), q[0.5].to_numpy(), q[0.25].to_numpy(),
            q[0.75].to_numpy())

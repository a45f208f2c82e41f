"""The slingshot figure: per-step loss and last-layer norm (``experiments/slingshot.py``)."""

from __future__ import annotations

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jgrok.figures.style import save_figure

def plot_slingshot(steps_df: pd.DataFrame, spikes: pd.DataFrame, path, variants) -> list[str]:
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
    return save_figure(fig, path, dpi=130, formats=("png",))

"""jgrok's figures, one module per kind of figure, all in one style and written through one
helper (`jgrok.figures.style.save_figure`: atomic PNG + PDF by default).

* `run_report.write_all_figures` -- a sweep's tables (phases, cells, spikes) and figures;
* `phase_diagram` -- per cell: the phase diagram, steps to generalize;
* `curves` -- per run: accuracy curves, loss curves with spikes, the loss grid;
* `acc_norm` -- accuracy with the weight norm (the Omnigrok / MNIST studies);
* `slingshot` -- per-step loss and last-layer norm (``experiments/slingshot.py``);
* `progress` -- Nanda et al.'s progress measures and Gromov's IPR
  (``experiments/progress_measures.py``).
"""

from jgrok.figures.acc_norm import plot_acc_norm
from jgrok.figures.curves import plot_accuracy_curves, plot_loss_curves, plot_loss_grid
from jgrok.figures.phase_diagram import plot_phase_diagram, plot_steps_to_generalize
from jgrok.figures.progress import plot_gromov_ipr, plot_nanda_phases, plot_progress_measures
from jgrok.figures.run_report import write_all_figures
from jgrok.figures.slingshot import plot_slingshot
from jgrok.figures.style import OKABE_ITO, PHASE_COLORS, save_figure, write_csv_atomic

__all__ = ["plot_acc_norm", "plot_accuracy_curves", "plot_loss_curves", "plot_loss_grid",
           "plot_phase_diagram", "plot_steps_to_generalize", "plot_gromov_ipr",
           "plot_progress_measures", "plot_nanda_phases", "write_all_figures", "plot_slingshot", "save_figure",
           "write_csv_atomic", "OKABE_ITO", "PHASE_COLORS"]

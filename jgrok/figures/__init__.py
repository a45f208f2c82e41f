"""jgrok's figures, one module per kind of figure, all in one style and written through one
helper (`jgrok.figures.style.save_figure`: atomic PNG + PDF by default). Figures draw the tables
they are given and compute no labels: the tables come from `jgrok.analysis`.

* `run_report.draw_report` -- a sweep's figures from its tables (`jgrok.analysis.report`);
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
from jgrok.figures.run_report import draw_report, showcase_run
from jgrok.figures.slingshot import plot_slingshot
from jgrok.figures.style import OKABE_ITO, PHASE_COLORS, save_figure

__all__ = ["plot_acc_norm", "plot_accuracy_curves", "plot_loss_curves", "plot_loss_grid",
           "plot_phase_diagram", "plot_steps_to_generalize", "plot_gromov_ipr",
           "plot_progress_measures", "plot_nanda_phases", "draw_report", "showcase_run",
           "plot_slingshot", "save_figure", "OKABE_ITO", "PHASE_COLORS"]

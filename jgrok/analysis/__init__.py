"""Analysis of sweep metrics tables: phase classification and training-loss spikes."""

from jgrok.analysis.phases import (METRIC_COLUMNS, PHASES, SEED_COLUMNS, SHAPE_NAMES,
                                   PhaseThresholds, RunPhase, ShapeFlags, aggregate_cells,
                                   cell_columns, classify_run, classify_table,
                                   coordinate_columns, first_step_reaching)
from jgrok.analysis.spikes import Spike, detect_spikes, spikes_table

__all__ = [
    "METRIC_COLUMNS", "PHASES", "SEED_COLUMNS", "SHAPE_NAMES", "PhaseThresholds", "RunPhase",
    "ShapeFlags", "aggregate_cells", "cell_columns", "classify_run", "classify_table",
    "coordinate_columns", "first_step_reaching", "Spike", "detect_spikes", "spikes_table",
]

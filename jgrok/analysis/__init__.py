"""Analysis of sweep metrics tables: phase classification and training-loss spikes."""

from jgrok.analysis.phases import (CELL_RESULT_COLUMNS, METRIC_COLUMNS, PHASE_LETTERS, PHASES,
                                   RULES, SEED_COLUMNS, SHAPE_NAMES, PhaseThresholds, RunPhase,
                                   ShapeFlags, aggregate_cells, cell_columns, classify_run,
                                   classify_table, coordinate_columns, first_step_reaching,
                                   liu_phase, phase_counts)
from jgrok.analysis.spikes import Spike, detect_spikes, spikes_table

__all__ = [
    "CELL_RESULT_COLUMNS", "METRIC_COLUMNS", "PHASE_LETTERS", "PHASES", "RULES", "SEED_COLUMNS",
    "SHAPE_NAMES", "PhaseThresholds", "RunPhase", "ShapeFlags", "aggregate_cells",
    "cell_columns", "classify_run", "classify_table", "coordinate_columns",
    "first_step_reaching", "liu_phase", "phase_counts", "Spike", "detect_spikes",
    "spikes_table",
]

"""Analysis of sweep metrics tables: phase classification, training-loss spikes, and `report`,
which makes (and writes) a run directory's phases, cells and spikes tables in one call."""

from jgrok.analysis.phases import (CELL_RESULT_COLUMNS, METRIC_COLUMNS, PHASE_LETTERS, PHASES,
                                   RULES, SEED_COLUMNS, SHAPE_NAMES, PhaseThresholds, RunPhase,
                                   ShapeFlags, aggregate_cells, cell_columns, classify_run,
                                   classify_table, coordinate_columns, first_step_reaching,
                                   liu_phase, phase_counts)
from jgrok.analysis.run_report import RunReport, report
from jgrok.analysis.spikes import Spike, detect_spikes, spikes_table

__all__ = [
    "CELL_RESULT_COLUMNS", "METRIC_COLUMNS", "PHASE_LETTERS", "PHASES", "RULES", "SEED_COLUMNS",
    "SHAPE_NAMES", "PhaseThresholds", "RunPhase", "ShapeFlags", "aggregate_cells",
    "cell_columns", "classify_run", "classify_table", "coordinate_columns",
    "first_step_reaching", "liu_phase", "phase_counts", "RunReport", "report", "Spike",
    "detect_spikes", "spikes_table",
]

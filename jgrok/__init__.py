"""jgrok: a JAX/Flax toolkit for studying grokking with vmapped, checkpointed sweeps.

The public API (`jgrok.api`, reference in docs/api.md): `make_config` from a preset with
overrides, `run` a sweep in memory or into a resumable run directory, `load` or `resume` a run
directory, and the `Run` it returns (metrics, phases, cells, figures, parameters at kept steps).
Importing jgrok does not start JAX.
"""

__version__ = "0.1.0"

from jgrok.analysis.phases import PhaseThresholds  # noqa: E402
from jgrok.api import (Params, Run, load, make_config, make_dataset, preset_names,  # noqa: E402
                       resume, run)
from jgrok.config import ExperimentConfig  # noqa: E402
from jgrok.errors import ConfigError  # noqa: E402

__all__ = ["__version__", "make_config", "make_dataset", "preset_names", "run", "resume", "load",
           "Run", "Params", "ExperimentConfig", "PhaseThresholds", "ConfigError"]

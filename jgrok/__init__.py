"""jgrok: a JAX/Flax toolkit for studying grokking with vmapped, checkpointed sweeps.

The public API (`jgrok.api`, reference in docs/api.md): `make_config` from a preset with
overrides, `run` a sweep in memory or into a resumable run directory, `load` or `resume` a run
directory, and the `Run` it returns (metrics, phases, cells, figures, parameters at kept steps).
The names load on first use, so `import jgrok.cli` in an entry point stays light and JAX starts
only when a sweep is built.
"""

import importlib

__version__ = "0.1.0"

#: exported name -> the module that defines it
_SOURCES = {
    **{name: "jgrok.api" for name in ("make_config", "make_dataset", "preset_names", "run",
                                      "resume", "load", "Run", "Params")},
    "ExperimentConfig": "jgrok.config",
    "PhaseThresholds": "jgrok.analysis.phases",
    "ConfigError": "jgrok.errors",
}

__all__ = ["__version__", *_SOURCES]


def __getattr__(name: str):
    if name in _SOURCES:
        return getattr(importlib.import_module(_SOURCES[name]), name)
    raise AttributeError(f"module 'jgrok' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SOURCES})

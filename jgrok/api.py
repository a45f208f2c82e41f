"""The public Python API: configure a sweep, run it, read its tables, draw its figures.

    import jgrok
    cfg = jgrok.make_config("cpu_grok", p=11, steps=200, fractions=(0.3, 0.6), seeds=2)
    result = jgrok.run(cfg, "runs/demo")          # or jgrok.run(cfg) in memory, no files
    result.phases(); result.cells(); result.draw_figures()
    again = jgrok.load("runs/demo")               # a finished or partial run directory

Everything here calls the library's modules (`jgrok.presets`, `jgrok.rundir`, `jgrok.sweep`,
`jgrok.analysis`, `jgrok.figures`, `jgrok.checkpoint`), so code written against these names keeps
working when those modules change inside.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional

import pandas as pd

from jgrok import presets
from jgrok.analysis.phases import (PhaseThresholds, aggregate_cells, classify_table,
                                   read_phase_rule)
from jgrok.config import ExperimentConfig
from jgrok.errors import ConfigError

if TYPE_CHECKING:
    from jgrok.data.split import Dataset

#: keyword names of `make_config` that differ from their field's name (as the flags do)
ALIASES = {"model": ("model", "kind"), "optimizer": ("optim", "name")}


def preset_names() -> list[str]:
    """The named configurations `make_config` starts from (`jgrok.presets.PRESETS`)."""
    return list(presets.PRESETS)


def _field_sections() -> dict[str, tuple[str, str]]:
    """Keyword name -> (config section, field) for every field of `ExperimentConfig`."""
    out = {}
    for section in dataclasses.fields(ExperimentConfig):
        for f in dataclasses.fields(section.default.__class__):
            out[f.name] = (section.name, f.name)
    for alias, target in ALIASES.items():
        out.pop(target[1], None)
        out[alias] = target
    return out


def _value(name: str, value: Any) -> Any:
    if name == "seeds" and isinstance(value, int) and not isinstance(value, bool):
        return tuple(range(value))  # as --seeds=N: init seeds 0..N-1
    if isinstance(value, (list, range)):
        return tuple(value)
    return value


def make_config(preset: str = "cpu_grok", **overrides: Any) -> ExperimentConfig:
    """A validated config: the named preset (`preset_names()`) with fields overridden.

    Overrides are given by field name, as the command-line flags are (`steps=200`, `p=11`,
    `fractions=(0.3, 0.6)`, `weight_decays=[1.0]`, `model="mlp"`, `optimizer="adam"`);
    `seeds=N` means seeds 0..N-1, a sequence gives them explicitly. An unknown name or an
    invalid value raises `ConfigError` with a one-line message.
    """
    cfg = presets.get(preset)
    fields = _field_sections()
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config field(s) {', '.join(unknown)}; see "
                          f"jgrok.ExperimentConfig or `python experiments/phase_diagram.py "
                          f"--help`")
    changes: dict[str, dict] = {}
    for name, value in overrides.items():
        section, field = fields[name]
        changes.setdefault(section, {})[field] = _value(name, value)
    for section, values in changes.items():
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section),
                                                                       **values)})
    cfg.validate()
    return cfg


def make_dataset(cfg: ExperimentConfig) -> Dataset:
    """The algorithmic dataset of `cfg.task` (operation and modulus) as a
    `jgrok.data.split.Dataset`; the MNIST and Wine sets come from `jgrok.data.omnigrok`."""
    from jgrok.data.algorithmic import make_task
    from jgrok.data.split import dataset_from_task

    return dataset_from_task(make_task(cfg.task.op, cfg.task.p))


class Params(NamedTuple):
    """One run's parameters at one step: `params` is a pytree of NumPy arrays."""

    step: int
    coords: dict
    params: Any


@dataclasses.dataclass
class Run:
    """A sweep's results: its config, grid and metrics table (one row per run x evaluation),
    with the run directory it lives in (None for a sweep trained in memory)."""

    config: ExperimentConfig
    metrics: pd.DataFrame
    grid: list[dict]
    directory: Optional[Path] = None
    thresholds: PhaseThresholds = PhaseThresholds()
    state: Any = None

    def phases(self) -> pd.DataFrame:
        """One row per run: grid coordinates, phase, fit and generalization steps
        (`jgrok.analysis.phases.classify_table` under `self.thresholds`)."""
        return classify_table(self.metrics, self.thresholds)

    def cells(self) -> pd.DataFrame:
        """One row per grid cell (coordinates without the seeds): phase counts, cell phase,
        median steps (`jgrok.analysis.phases.aggregate_cells`)."""
        return aggregate_cells(self.phases())

    def draw_figures(self, out_dir: Optional[str | os.PathLike] = None) -> list[str]:
        """Write the analysis tables (phases.csv, cells.csv, spikes.csv, phase_rule.json) and
        the figures (`<out_dir>/figures/*.png` and `.pdf`) into `out_dir`, by default the run
        directory. Returns the written paths."""
        out = out_dir if out_dir is not None else self.directory
        if out is None:
            raise ConfigError("a sweep trained in memory has no run directory; pass out_dir")
        return _write_report(self.metrics, out, self.thresholds)

    def checkpoint_steps(self) -> list[int]:
        """The steps of the checkpoints kept in the run directory (the last
        `keep_checkpoints` and, with `keep_checkpoint_every`, the history)."""
        from jgrok.checkpoint import Checkpoints

        if self.directory is None or not (self.directory / "checkpoints").is_dir():
            return []  # (opening the manager would create the folder)
        ckpts = Checkpoints(self.directory)
        try:
            return ckpts.steps()
        finally:
            ckpts.close()

    def params(self, step: Optional[int] = None, **coords: Any) -> Params:
        """The parameters of the one run whose grid coordinates match `coords`
        (e.g. `seed=1, fraction=0.5`) at a kept checkpoint `step` (default: the newest).
        A sweep trained in memory has only its final step."""
        from jgrok.checkpoint import extract_run, find_run, run_params

        if self.directory is not None:
            if not self.checkpoint_steps():
                raise ConfigError(f"no checkpoint in {self.directory}")
            return Params(*extract_run(self.directory, step, **coords))
        final = self.config.train.steps
        if self.state is None or step not in (None, final):
            raise ConfigError(f"a sweep trained in memory holds only its final step {final}")
        run = find_run(self.grid, **coords)
        return Params(final, self.grid[run], run_params(dict(params=self.state.params), run))


def _write_report(metrics: pd.DataFrame, out: str | os.PathLike,
                  thresholds: PhaseThresholds) -> list[str]:
    """The analysis tables, then the figures drawn from them."""
    from jgrok.analysis import report
    from jgrok.figures import draw_report

    rep = report(metrics, out, thresholds)
    return [*rep.paths, *draw_report(rep, out)]


def run(cfg: ExperimentConfig, out: Optional[str | os.PathLike] = None, *,
        resume: bool = False, dataset: Optional[Dataset] = None, progress: bool = True,
        tensorboard: bool = False, log: Callable[[str], None] = print) -> Run:
    """Train every run of `cfg`'s grid and return the results.

    With `out`, the sweep lives in a resumable run directory (config.json, metrics.csv,
    checkpoints; `jgrok.rundir.run_sweep`): `resume=True` continues a stopped or killed sweep
    from its newest checkpoint. Without `out` it trains in memory and writes nothing.
    `dataset` defaults to `make_dataset(cfg)`; `progress` shows the estimate and a progress bar
    (run directories only); `log` receives the sweep's messages.
    """
    dataset = make_dataset(cfg) if dataset is None else dataset
    if out is None:
        from jgrok.sweep import train_sweep

        metrics, state = train_sweep(cfg, dataset)
        return Run(cfg, metrics, cfg.grid(), state=state)
    from jgrok import reporting, rundir

    rundir.run_sweep(cfg, dataset, out, resume=resume, log=log,
                     extra_config=dict(task_name=dataset.name),
                     progress=reporting.ProgressOptions() if progress else None,
                     tensorboard=tensorboard)
    return load(out)


def load(run_dir: str | os.PathLike) -> Run:
    """Open a run directory again, finished or partial: its config.json, the rows of its
    metrics.csv (none yet if it has no table) and, through `Run.params`, its checkpoints.
    Phases follow the directory's phase_rule.json where it has one."""
    from jgrok import tables

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        subs = sorted(p.parent.name for p in run_dir.glob("*/config.json"))
        raise ConfigError(f"no config.json in {run_dir}" + (
            f"; its variants are run directories: {', '.join(subs)}" if subs else ""))
    saved = json.loads(cfg_path.read_text())
    cfg = ExperimentConfig.from_dict(saved["config"])
    metrics_path = run_dir / "metrics.csv"
    metrics = tables.read_metrics(metrics_path) if metrics_path.exists() else pd.DataFrame(
        columns=["run", "step", "train_acc", "val_acc"])
    return Run(cfg, metrics, saved["grid"], run_dir, read_phase_rule(run_dir))


def resume(run_dir: str | os.PathLike, **kwargs: Any) -> Run:
    """Continue the sweep of a run directory with the config it was started with
    (`run(load(run_dir).config, run_dir, resume=True, ...)`; other keywords go to `run`)."""
    return run(load(run_dir).config, run_dir, resume=True, **kwargs)


__all__ = ["make_config", "make_dataset", "preset_names", "run", "resume", "load", "Run",
           "Params"]

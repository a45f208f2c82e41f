"""Orbax checkpoints of the whole batched state of a sweep.

`Checkpoints` wraps an `orbax.checkpoint.CheckpointManager` that keeps the last k versions under
`<run_dir>/checkpoints/<step>`. Restoring walks back from the newest version: one that cannot be
read (truncated file, deleted directory, arrays of the wrong shape) is reported with a warning and
the previous one is tried, so a corrupt latest checkpoint costs at most one checkpoint interval.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from jgrok.config import TrainConfig
from jgrok.errors import ConfigError

log = logging.getLogger(__name__)


def preservation_policy(keep: int, keep_every: Optional[int] = None
                        ) -> ocp.checkpoint_managers.PreservationPolicy:
    """Orbax's policy for which versions survive a save: the last `keep`, and with
    `keep_every` also the one nearest each multiple of `keep_every` steps (the history that
    interpretability work reads). Nearest rather than exactly at a multiple: checkpoint steps
    are evaluation steps, which a log-spaced schedule or a resume places off the multiples."""
    latest = ocp.checkpoint_managers.LatestN(n=keep)
    if keep_every is None:
        return latest
    return ocp.checkpoint_managers.AnyPreservationPolicy(
        [latest, ocp.checkpoint_managers.EveryNStepsClosest(interval_steps=keep_every)])


def versions_kept(train: TrainConfig) -> int:
    """The most checkpoint versions a sweep with these loop settings keeps on disk at once:
    the last `keep_checkpoints` and at most one per `keep_checkpoint_every` steps."""
    if train.keep_checkpoint_every is None:
        return train.keep_checkpoints
    saves = train.steps // train.checkpoint_every + 1
    return train.keep_checkpoints + min(saves, train.steps // train.keep_checkpoint_every + 1)


class Checkpoints:
    """The checkpoints of one run directory: the last `keep` versions and, with `keep_every`,
    a history of one version near each multiple of `keep_every` steps (`preservation_policy`)."""

    def __init__(self, run_dir: str | os.PathLike, keep: int = 3,
                 keep_every: Optional[int] = None):
        self.directory = Path(run_dir).absolute() / "checkpoints"
        # a fixed single-item layout: the manager need not infer it from the newest version on
        # disk, which a damaged newest version would make it misread
        self.manager = ocp.CheckpointManager(
            self.directory, item_handlers=ocp.StandardCheckpointHandler(),
            options=ocp.CheckpointManagerOptions(
                preservation_policy=preservation_policy(keep, keep_every), create=True,
                enable_async_checkpointing=False))

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any) -> None:
        self.manager.save(int(step), args=ocp.args.StandardSave(state), force=True)
        self.manager.wait_until_finished()

    def restore_latest(self, like: Any, warn=None, n_runs: Optional[int] = None
                       ) -> tuple[Optional[int], Any]:
        """(step, state) of the newest readable checkpoint shaped like `like`, or (None, None).

        `like` is a state (or abstract state) with the shapes, dtypes and shardings expected.
        With `n_runs` (the grid's runs; every leaf's first axis is the run axis, padded to a
        multiple of the device count), a checkpoint written with another padding -- another
        number of devices -- is re-padded: its first `n_runs` runs are kept and the padding
        is copies of the last one, which is what padding is (`sweep.build_engine`).
        """
        warn = warn or log.warning
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        for step in reversed(self.steps()):
            try:
                saved = _runs(self.manager.item_metadata(step).tree)
                if n_runs is not None and saved not in (None, _runs(abstract)) \
                        and saved >= n_runs and jax.process_count() == 1:
                    state = self._restore_repadded(step, abstract, saved, n_runs)
                else:
                    state = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
                _check_shapes(state, abstract)
                return step, state
            except Exception as e:  # noqa: BLE001 - any unreadable checkpoint falls back
                msg = " ".join(str(e).split())[:300]
                moved = self._set_aside(step)
                warn(f"checkpoint at step {step} in {self.directory} is unreadable "
                     f"({type(e).__name__}: {msg}); moved it to {moved} and falling back to "
                     f"the previous one")
        return None, None

    def _restore_repadded(self, step: int, abstract: Any, saved: int, n_runs: int) -> Any:
        device = jax.local_devices()[0]
        on_host = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct((saved, *a.shape[1:]), a.dtype,
                                           sharding=jax.sharding.SingleDeviceSharding(device)),
            abstract)
        state = self.manager.restore(step, args=ocp.args.StandardRestore(on_host))

        def repad(a, target):
            a = np.asarray(a)[:n_runs]
            pad = np.repeat(a[-1:], target.shape[0] - n_runs, axis=0)
            return jax.device_put(np.concatenate([a, pad]), target.sharding)

        return jax.tree.map(repad, state, abstract)

    def _set_aside(self, step: int) -> Path:
        """Move an unreadable checkpoint out of the manager's way (kept for inspection)."""
        dest_dir = self.directory.parent / "corrupt_checkpoints"
        dest_dir.mkdir(exist_ok=True)
        dest = dest_dir / f"{step}-{int(time.time())}"
        shutil.move(str(self.directory / str(step)), dest)
        self.manager.reload()
        return dest

    def close(self) -> None:
        self.manager.close()


def _runs(tree) -> Optional[int]:
    """The length of the run axis shared by every leaf of `tree` (arrays, abstract arrays or
    a checkpoint's array metadata), or None if the leaves' first axes differ."""
    lengths = {tuple(a.shape)[:1] for a in jax.tree.leaves(tree)}
    return lengths.pop()[0] if len(lengths) == 1 and () not in lengths else None


def _check_shapes(state, abstract) -> None:
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(abstract)):
        if tuple(a.shape) != tuple(b.shape):
            raise ValueError(f"array shape {tuple(a.shape)} != expected {tuple(b.shape)}")


def load_raw(run_dir: str | os.PathLike, step: Optional[int] = None) -> tuple[int, dict]:
    """The newest (or given) checkpoint as nested dicts of NumPy arrays, without a target."""
    ck = Checkpoints(run_dir)
    steps = ck.steps()
    if not steps:
        raise ConfigError(f"no checkpoint in {ck.directory}")
    step = steps[-1] if step is None else int(step)
    if step not in steps:
        raise ConfigError(f"no checkpoint at step {step} in {ck.directory}; have {steps}")
    raw = ck.manager.restore(step, args=ocp.args.StandardRestore())
    ck.close()
    return step, raw


def run_params(raw_state: dict, run: int) -> dict:
    """One run's parameters (a pytree of NumPy arrays) from a batched raw state."""
    return jax.tree.map(lambda a: np.asarray(a)[run], raw_state["params"])


def find_run(grid: list[dict], **coords) -> int:
    """Index of the single run of `grid` (config.json's "grid") matching the coordinates."""
    hits = [i for i, g in enumerate(grid)
            if all(np.isclose(g[k], v) if isinstance(v, float) else g[k] == v
                   for k, v in coords.items())]
    if len(hits) != 1:
        what = ", ".join(f"{k}={v}" for k, v in coords.items())
        raise ConfigError(f"no run matches {what}" if not hits else
                          f"{len(hits)} runs match {what}; give more coordinates")
    return hits[0]


def extract_run(run_dir: str | os.PathLike, step: Optional[int] = None, **coords
                ) -> tuple[int, dict, dict]:
    """One run's parameters from a sweep's newest (or given) checkpoint, by grid coordinates:
    `extract_run("runs/x", seed=3, fraction=0.5)` -> (step, grid coordinates, params)."""
    import json

    cfg_path = Path(run_dir) / "config.json"
    if not cfg_path.exists():
        raise ConfigError(f"no config.json in {run_dir}")
    grid = json.loads(cfg_path.read_text())["grid"]
    run = find_run(grid, **coords)
    step, raw = load_raw(run_dir, step)
    return step, grid[run], run_params(raw, run)

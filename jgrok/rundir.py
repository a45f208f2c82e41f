"""A sweep with a run directory: config.json, metrics.csv and Orbax checkpoints, resumable.

Layout of `<run_dir>`:
    config.json     every setting, the grid, package and JAX versions
    metrics.csv     tidy table, one row per run x eval step (rewritten atomically)
    checkpoints/    Orbax CheckpointManager, the last `keep_checkpoints` versions

Order of writes at a checkpoint step: metrics.csv first, then the checkpoint. So the table always
holds every row up to the newest checkpoint; on resume, rows after the restored step are dropped
and recomputed, and the final table is identical to that of an uninterrupted sweep.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Optional

import jax
import pandas as pd

from jgrok import metrics as mio
from jgrok import sweep
from jgrok.checkpoint import Checkpoints
from jgrok.config import ExperimentConfig
from jgrok.data.split import Dataset
from jgrok.errors import ConfigError

#: settings that may change between a sweep and its resumption
RESUMABLE_CHANGES = ("train.checkpoint_every", "train.keep_checkpoints")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = list(v) if isinstance(v, tuple) else v
    return out


def config_differences(a: dict, b: dict) -> list[str]:
    fa, fb = _flatten(a), _flatten(b)
    return [k for k in sorted(set(fa) | set(fb))
            if fa.get(k) != fb.get(k) and k not in RESUMABLE_CHANGES]


def _is_checkpoint_step(step: int, last_saved: int, cfg: ExperimentConfig) -> bool:
    return step == cfg.train.steps or step - last_saved >= cfg.train.checkpoint_every


def run_sweep(cfg: ExperimentConfig, dataset: Dataset, run_dir: str | os.PathLike,
              resume: bool = False, log: Callable[[str], None] = print, devices=None,
              extra_config: Optional[dict] = None,
              on_eval: Optional[Callable] = None) -> pd.DataFrame:
    """Train the grid of `cfg` on `dataset`, writing into `run_dir`. Returns the metrics table.

    With `resume=True`, an existing run directory is continued from its newest readable
    checkpoint; a config that differs from the saved one is refused, naming the settings.
    """
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    metrics_path = run_dir / "metrics.csv"
    cfg_dict = cfg.to_dict()
    if cfg_path.exists():
        if not resume:
            raise ConfigError(f"{run_dir} already holds a sweep; pass --resume to continue it "
                              f"or choose another --out")
        try:
            saved = json.loads(cfg_path.read_text())["config"]
        except Exception as e:  # noqa: BLE001
            raise ConfigError(f"{cfg_path} is unreadable ({type(e).__name__}); cannot resume")
        diff = config_differences(saved, cfg_dict)
        if diff:
            fs, fc = _flatten(saved), _flatten(cfg_dict)
            shown = ", ".join(f"{k} (saved {fs.get(k)!r}, now {fc.get(k)!r})" for k in diff[:6])
            raise ConfigError(f"cannot resume {run_dir}: config differs in {shown}")

    t0 = time.perf_counter()
    engine = sweep.build_engine(cfg, dataset, devices)
    state = sweep.init_state(engine)
    jax.block_until_ready(state)
    ckpts = Checkpoints(run_dir, keep=cfg.train.keep_checkpoints)
    start, rows = 0, []
    if resume and ckpts.steps():
        step, restored = ckpts.restore_latest(state, warn=lambda m: log("WARNING: " + m))
        if step is not None:
            start, state = step, restored
            if metrics_path.exists():
                old = mio.read_metrics(metrics_path)
                rows = old[old.step <= step].to_dict("records")
            log(f"resumed from the checkpoint at step {step} ({len(rows)} metric rows kept)")
        else:
            log("WARNING: no readable checkpoint; starting from scratch")
    elif not cfg_path.exists() or not resume:
        mio.write_json(dict(config=cfg_dict, grid=engine.grid, versions=mio.versions(),
                            n_runs=engine.n_runs, dataset=dataset.name,
                            **(extra_config or {})), cfg_path)

    last_saved = start
    timing = dict(t_start=time.perf_counter(), step_start=start, setup_s=time.perf_counter() - t0)

    def record(step, st, m):
        nonlocal last_saved
        if step == start and rows:
            return  # restored step: its rows are already in the table
        rows.extend(sweep.metric_rows(engine, step, m))
        if on_eval is not None:
            on_eval(step, engine, m, timing)
        if step > start and _is_checkpoint_step(step, last_saved, cfg):
            mio.write_csv(pd.DataFrame(rows), metrics_path)
            ckpts.save(step, st)
            last_saved = step

    state = sweep.run_to_step(engine, state, start, cfg.train.eval_steps(), record)
    df = pd.DataFrame(rows)
    mio.write_csv(df, metrics_path)
    ckpts.close()
    return df

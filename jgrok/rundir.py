"""A sweep with a run directory: config.json, metrics.csv and Orbax checkpoints, resumable.

Layout of `<run_dir>`:
    config.json     every setting, the grid, package and JAX versions
    metrics.csv     tidy table, one row per run x eval step (rewritten atomically)
    checkpoints/    Orbax CheckpointManager, the last `keep_checkpoints` versions

Order of writes at a checkpoint step: metrics.csv first, then the checkpoint. So the table always
holds every row up to the newest checkpoint; on resume, rows after the restored step are dropped
and recomputed, and the final table is identical to that of an uninterrupted sweep.

Before anything is written, `check_disk` refuses a sweep whose checkpoints and table would not fit
on the output filesystem. On resume, a metrics.csv that cannot be read, or whose rows do not match
the restored checkpoint (a missing, duplicated or half-written row), is refused with one line
naming the file: its rows before the checkpoint cannot be recomputed from the checkpoint, so the
user chooses (move it aside to resume with only the rows from the checkpoint on, or start a new
run directory). Stale temporary files of a killed atomic write are removed on resume.
See docs/reliability.md for what survives what.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import jax
import pandas as pd

from jgrok import hooks, reporting, sweep, tables, writers
from jgrok.checkpoint import Checkpoints, versions_kept
from jgrok.config import ExperimentConfig
from jgrok.data.split import Dataset
from jgrok.errors import ConfigError
from jgrok.memory import tree_bytes

#: settings that may change between a sweep and its resumption
RESUMABLE_CHANGES = ("train.checkpoint_every", "train.keep_checkpoints",
                     "train.keep_checkpoint_every", "train.stop_when_decided")
#: settings that an explicit evaluation schedule (`run_sweep(eval_steps=...)`) stands in for
SCHEDULE_SETTINGS = ("train.eval_every", "train.log_eval")


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


#: rough size of one metrics.csv row on disk (about 15 numbers of up to 20 characters)
METRICS_ROW_BYTES = 400
#: Orbax metadata per checkpoint version, and slack for the filesystem's block rounding
CHECKPOINT_OVERHEAD_BYTES = 256 * 1024
CHECKPOINT_SLACK = 1.1


def _used_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def _mb(n: float) -> str:
    return f"{n / 2**20:,.1f} MB"


def check_disk(run_dir: str | os.PathLike, state, keep: int, free_bytes: Optional[int] = None,
               metrics_rows: int = 0) -> int:
    """Refuse (ConfigError, one line) a sweep that cannot fit on the filesystem of `run_dir`.

    Needed: `keep + 1` checkpoint versions of `state` (Orbax writes the new version before it
    deletes the oldest), the metrics table twice (the atomic rewrite holds a temporary copy),
    minus what the run directory already holds (a resumed sweep replaces it). `free_bytes`
    overrides `shutil.disk_usage` (for tests). Returns the estimated bytes still needed.
    """
    run_dir = Path(run_dir)
    ckpt = int(tree_bytes(state) * CHECKPOINT_SLACK) + CHECKPOINT_OVERHEAD_BYTES
    table = 2 * METRICS_ROW_BYTES * int(metrics_rows)
    used = (_used_bytes(run_dir / "checkpoints") if (run_dir / "checkpoints").exists() else 0) \
        + (_used_bytes(run_dir / "metrics.csv") if (run_dir / "metrics.csv").exists() else 0)
    need = max(ckpt * (int(keep) + 1) + table - used, 0)
    probe = run_dir.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if free_bytes is None:
        free_bytes = shutil.disk_usage(probe).free
    if need > free_bytes:
        raise ConfigError(
            f"not enough disk space for {run_dir}: the sweep needs about {_mb(need)} "
            f"({keep} + 1 checkpoint versions of {_mb(ckpt)} and a {_mb(table)} metrics table) "
            f"but the filesystem of {probe} has {_mb(free_bytes)} free; free some space, "
            f"lower --keep_checkpoints or choose another --out")
    return need


def _remove_stale_temp_files(run_dir: Path, log: Callable[[str], None]) -> None:
    """Temporary files of an atomic write that a killed process left behind."""
    for name in ("metrics.csv", "config.json"):
        for tmp in run_dir.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
            log(f"removed {tmp}, left by an interrupted write")


def _set_aside_itemless_checkpoints(run_dir: Path, log: Callable[[str], None]) -> None:
    """Move checkpoint versions without their saved item (an emptied directory) out of the way
    before the Orbax manager opens: the manager infers its layout from the newest version, and an
    item-less newest version makes it misread every version, the good ones included."""
    ck = run_dir / "checkpoints"
    if not ck.is_dir():
        return
    for p in sorted(ck.iterdir(), key=lambda q: q.name):
        if p.name.isdigit() and p.is_dir() and not (p / "default").is_dir():
            dest = run_dir / "corrupt_checkpoints" / f"{p.name}-{int(time.time())}"
            dest.parent.mkdir(exist_ok=True)
            shutil.move(str(p), dest)
            log(f"WARNING: checkpoint at step {p.name} in {ck} is unreadable (its saved state "
                f"is missing); moved it to {dest} and falling back to the previous one")


def _rows_until(metrics_path: Path, step: int, engine, schedule: tuple, run_dir: Path,
                log: Callable[[str], None]) -> list[dict]:
    """The rows of metrics.csv up to the restored checkpoint `step`, checked to be complete."""
    if not metrics_path.exists():
        log(f"WARNING: {metrics_path} is missing; the table will hold only the rows from step "
            f"{step} on")
        return []
    advice = (f"move it aside to resume with only the rows from step {step} on, or start a "
              f"new run directory")
    try:
        old = tables.read_metrics(metrics_path)
    except ConfigError as e:
        raise ConfigError(f"cannot resume {run_dir}: {e}; {advice}")
    problem = None
    run = pd.to_numeric(old["run"], errors="coerce")
    at = pd.to_numeric(old["step"], errors="coerce")
    if run.isna().any() or at.isna().any():
        problem = "a row without a run or step number"
    else:
        kept = old[at <= step]
        pairs = list(zip(run[at <= step].astype(int), at[at <= step].astype(int)))
        expected = {(r, s) for s in schedule if s <= step
                    for r in range(engine.n_runs)}
        # columns never empty in a whole row (the last one catches a row cut short)
        must = [c for c in dict.fromkeys(("run", "step", *engine.grid[0], "train_acc",
                                          "val_acc", "diverged", "diverged_step",
                                          old.columns[-1])) if c in old.columns]
        if len(pairs) != len(set(pairs)):
            problem = "duplicated (run, step) rows"
        elif set(pairs) != expected:
            problem = (f"{len(expected - set(pairs))} missing and {len(set(pairs) - expected)} "
                       f"unexpected (run, step) rows up to step {step}")
        elif kept[must].isna().any().any():
            problem = "a half-written row"
    if problem:
        raise ConfigError(f"cannot resume {run_dir}: metrics table {metrics_path} is damaged "
                          f"({problem}) and does not match the checkpoint at step {step}; "
                          f"{advice}")
    return old[at <= step].to_dict("records")


def check_run_dir(run_dir: str | os.PathLike) -> Path:
    """Check, before anything is written, that `run_dir` can be a run directory: a path that is
    a file, lies under a file, or where nothing can be created is one `ConfigError` line naming
    it. Writes nothing that stays (a probe in the directory, or in its nearest existing parent,
    is removed at once)."""
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"run directory {path} is an existing file, not a directory; choose "
                          f"another --out")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"run directory {path} lies under {existing}, which is a file; "
                          f"choose another --out")
    try:
        if existing == path:
            with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
                pass
        else:
            os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".write-check-"))
    except OSError as e:
        raise ConfigError(f"cannot write the run directory {path}: {e.strerror or e} in "
                          f"{existing} (choose a writable --out)") from None
    return path


def eval_schedule(cfg: ExperimentConfig, eval_steps: Optional[Sequence[int]] = None
                  ) -> tuple[int, ...]:
    """The steps at which a sweep evaluates: `eval_steps` if given (e.g. Omnigrok's powers of
    two, `jgrok.data.omnigrok.omnigrok_eval_steps`), else `cfg.train.eval_steps()`; always with
    step 0 and the last step."""
    if eval_steps is None:
        return cfg.train.eval_steps()
    steps = sorted({int(s) for s in eval_steps} | {0, cfg.train.steps})
    if steps[0] < 0 or steps[-1] > cfg.train.steps:
        raise ConfigError(f"evaluation steps must lie in [0, {cfg.train.steps}]")
    return tuple(steps)


#: a user's measure after each evaluation: on_eval(step, state, metrics) -> None, or a dict of
#: extra per-run columns ({name: sequence of n_runs values}) added to that step's rows of
#: metrics.csv (`hooks.UserColumns`)
OnEval = Callable[[int, Any, dict], Optional[dict]]
#: per-step logger (the slingshot study): step_log(engine, state, n) -> (state after n steps,
#: {name: array (n_runs, n)}), values of steps `step .. step + n - 1`, written to steps.csv
#: (`hooks.StepLogger`)
StepLog = Callable[[Any, Any, int], tuple]


def _rows_before(path: Path, step: int) -> list[dict]:
    """The rows of a per-step table (steps.csv) before `step`; none if it is missing."""
    if not path.exists():
        return []
    old = tables.read_metrics(path, required=("run", "step"))
    return old[pd.to_numeric(old["step"], errors="coerce") < step].to_dict("records")


def run_sweep(cfg: ExperimentConfig, dataset: Dataset, run_dir: str | os.PathLike,
              resume: bool = False, log: Callable[[str], None] = print, devices=None,
              extra_config: Optional[dict] = None,
              on_eval: Optional[OnEval] = None,
              memory_limit: Optional[int] = None,
              eval_steps: Optional[Sequence[int]] = None,
              step_log: Optional[StepLog] = None,
              coords: Optional[dict] = None,
              progress: Optional[reporting.ProgressOptions] = reporting.ProgressOptions(),
              tensorboard: bool = False,
              wandb_project: Optional[str] = None) -> pd.DataFrame:
    """Train the grid of `cfg` on `dataset`, writing into `run_dir`. Returns the metrics table.

    `eval_steps`: the evaluation schedule (`eval_schedule`), saved in config.json.
    `on_eval(step, state, metrics)`: called after every evaluation; the extra per-run columns it
    returns go into metrics.csv, so they survive a resume like the metrics do.
    `step_log`: advance with a per-step logger instead (`StepLog`); its values are written to
    `<run_dir>/steps.csv` together with metrics.csv and resumed with it.
    `coords`: constant columns placed after `run` in every row (e.g. a variant's name).
    `memory_limit`: bytes per device to plan waves of runs for (`sweep.build_engine`).
    `progress`: how to report progress (`jgrok.reporting`: an estimate from the first timed
    steps, then a bar or plain lines with ETA and fitted/generalized/diverged counts); None:
    silent. `tensorboard`: also write per-cell aggregates and per-run curves to
    `<run_dir>/tensorboard` (and its `runs/`); `wandb_project`: also log to one Weights & Biases
    run of that project (`jgrok.writers`).
    `cfg.train.stop_when_decided` > 0 ends the sweep once every run is decided
    (`hooks.StopWhenDecided`), with the tables and a checkpoint as at the end.

    With `resume=True`, an existing run directory is continued from its newest readable
    checkpoint; a config (or evaluation schedule) that differs from the saved one is refused,
    naming the settings. The loop and its hooks: `jgrok.hooks`.
    """
    run_dir = check_run_dir(run_dir) if jax.process_index() == 0 else Path(run_dir)
    schedule = eval_schedule(cfg, eval_steps)
    if (run_dir / "config.json").exists():
        _check_resumable(run_dir, cfg, resume, eval_steps, schedule)
    engine = sweep.build_engine(cfg, dataset, devices, memory_limit=memory_limit)
    n_local = engine.n_padded // engine.mesh.devices.size
    # (on CPU, waves of one run are the default, not a memory limit: not worth a line)
    if 0 < engine.wave < n_local and (memory_limit or engine.mesh.devices.flat[0].platform
                                           != "cpu"):
        log(f"{n_local} runs per device, trained in waves of {engine.wave}")
    state = sweep.init_state(engine)
    jax.block_until_ready(state)
    check_disk(run_dir, state, versions_kept(cfg.train),
               metrics_rows=engine.n_runs * len(schedule))
    if resume and jax.process_index() == 0:
        _remove_stale_temp_files(run_dir, log)
        _set_aside_itemless_checkpoints(run_dir, log)
    if jax.process_count() > 1:  # every process has checked the directory before any write
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("jgrok.run_sweep.start")
    ckpts = Checkpoints(run_dir, keep=cfg.train.keep_checkpoints,
                        keep_every=cfg.train.keep_checkpoint_every)
    info = dict(config=cfg.to_dict(), grid=engine.grid, versions=tables.versions(),
                n_runs=engine.n_runs, dataset=dataset.name,
                **({} if eval_steps is None else dict(eval_steps=schedule)),
                **(extra_config or {}))
    try:
        loop, state = _start(run_dir, engine, state, ckpts, schedule, resume, info,
                             step_log is not None, log)
    except ConfigError:
        ckpts.close()
        raise
    loop.prefix = dict(coords or {})
    return _train(loop, state, ckpts, run_dir, info, on_eval, step_log, progress, tensorboard,
                  wandb_project)


def _check_resumable(run_dir: Path, cfg: ExperimentConfig, resume: bool,
                     eval_steps: Optional[Sequence[int]], schedule: tuple) -> None:
    """Refuse (ConfigError) to write into a run directory that holds a sweep, unless `resume`
    and its config.json holds the same settings and evaluation steps."""
    cfg_path = run_dir / "config.json"
    if not resume:
        raise ConfigError(f"{run_dir} already holds a sweep; pass --resume to continue it "
                          f"or choose another --out")
    try:
        saved_all = json.loads(cfg_path.read_text())
        saved = saved_all["config"]
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"{cfg_path} is unreadable ({type(e).__name__}); cannot resume")
    try:  # settings added since the directory was written take their defaults
        saved = ExperimentConfig.from_dict(saved).to_dict()
    except Exception:  # noqa: BLE001 - compare as saved; the differences are reported
        pass
    cfg_dict = cfg.to_dict()
    diff = config_differences(saved, cfg_dict)
    if eval_steps is not None and "eval_steps" in saved_all:
        # an explicit schedule (compared below) replaces the config's eval_every/log_eval
        diff = [k for k in diff if k not in SCHEDULE_SETTINGS]
    if diff:
        fs, fc = _flatten(saved), _flatten(cfg_dict)
        shown = ", ".join(f"{k} (saved {fs.get(k)!r}, now {fc.get(k)!r})" for k in diff[:6])
        raise ConfigError(f"cannot resume {run_dir}: config differs in {shown}")
    saved_schedule = tuple(saved_all.get("eval_steps") or cfg.train.eval_steps())
    if saved_schedule != schedule:
        raise ConfigError(f"cannot resume {run_dir}: the evaluation steps differ (saved "
                          f"{len(saved_schedule)} steps, now {len(schedule)})")


def _start(run_dir: Path, engine, state, ckpts: Checkpoints, schedule: tuple, resume: bool,
           info: dict, step_logged: bool, log: Callable[[str], None]):
    """The `hooks.Loop` and state the sweep starts from: the newest readable checkpoint and the
    table's rows up to it (resume), else step 0 (config.json written for a new sweep)."""
    cfg_path = run_dir / "config.json"
    start, rows, step_rows = 0, [], []
    if resume and ckpts.steps():
        step, restored = ckpts.restore_latest(state, warn=lambda m: log("WARNING: " + m),
                                             n_runs=engine.n_runs)
        if step is not None:
            rows = _rows_until(run_dir / "metrics.csv", step, engine, schedule, run_dir, log)
            if step_logged:
                step_rows = _rows_before(run_dir / "steps.csv", step)
            start, state = step, restored
            log(f"resumed from the checkpoint at step {step} ({len(rows)} metric rows kept)")
        else:
            log("WARNING: no readable checkpoint; starting from scratch")
    elif not cfg_path.exists() or not resume:
        if jax.process_index() == 0:  # with several processes, only process 0 writes files
            tables.write_json(info, cfg_path)
    return hooks.Loop(engine, schedule, start, rows, step_rows=step_rows,
                      last_saved=start), state


def metric_writers(run_dir: Path, loop: hooks.Loop, info: dict, step_logged: bool,
                   tensorboard: bool, wandb_project: Optional[str]) -> list:
    """The metric writers of a sweep (`jgrok.writers`): metrics.csv always, steps.csv with a
    per-step logger, TensorBoard and Weights & Biases where asked for."""
    grid = loop.engine.grid
    out = [writers.CsvTable(run_dir / "metrics.csv", loop.rows)]
    if step_logged:
        out.append(writers.CsvTable(run_dir / "steps.csv", loop.step_rows, by_run=True))
    if tensorboard:
        out += [writers.TensorBoardCells(run_dir / "tensorboard", grid),
                writers.TensorBoardRuns(run_dir / "tensorboard" / "runs", grid)]
    if wandb_project:
        out.append(writers.WandbRun(run_dir, grid, {k: v for k, v in info.items()
                                                     if k != "grid"}, wandb_project))
    return out


def _reporter(loop: hooks.Loop, progress: reporting.ProgressOptions):
    """The progress display; on a CPU, evaluating a big grid takes minutes: the first steps
    are timed before it."""
    engine = loop.engine
    platform = engine.mesh.devices.flat[0].platform
    return reporting.SweepProgress(engine.n_runs, engine.cfg.train.steps, loop.start,
                                   loop.schedule, platform, progress,
                                   defer_first_eval=platform == "cpu" and not loop.rows)


def _train(loop: hooks.Loop, state, ckpts: Checkpoints, run_dir: Path, info: dict, on_eval,
           step_log, progress, tensorboard: bool, wandb_project: Optional[str]) -> pd.DataFrame:
    """Assemble the hooks (order: `jgrok.hooks`), train to the end (or until a hook ends the
    loop), write the tables. Process 0 writes the files and reports progress."""
    cfg = loop.engine.cfg
    main = jax.process_index() == 0
    reporter = _reporter(loop, progress) if progress is not None and main else None
    out: list = []
    try:
        out = metric_writers(run_dir, loop, info, step_log is not None, tensorboard,
                             wandb_project) if main else []
        flush = (lambda: [w.flush() for w in out]) if main else None
        checkpointer = hooks.Checkpointer(loop, ckpts, cfg, flush)
        hook_list = [hooks.MetricRows(loop),
                     *([hooks.UserColumns(loop, on_eval)] if on_eval is not None else []),
                     *([hooks.Progress(loop, reporter)] if reporter is not None else []),
                     hooks.WriteMetrics(loop, out)]
        if cfg.train.stop_when_decided:
            hook_list.append(hooks.StopWhenDecided(loop, cfg.train.stop_when_decided))
        hook_list += [checkpointer, hooks.StopOnSignal(loop, checkpointer)]
        # (a restored step's rows are in the table: it is not evaluated again)
        steps = [s for s in loop.schedule if s > loop.start or not loop.rows]
        if not loop.finish:
            with hooks.stop_on_signals() as loop.stop:
                state = sweep.run_to_step(
                    loop.engine, state, loop.start, steps, hooks=hook_list,
                    pacer=reporter if jax.process_count() == 1 else None,  # same pieces in
                    advance_with=hooks.StepLogger(loop, step_log) if step_log else None)
        if flush is not None:
            flush()
    finally:
        hooks.close_all([*([reporter] if reporter is not None else []), *out, ckpts])
    return pd.DataFrame(loop.rows)


def run_variants(variants: dict[str, ExperimentConfig], datasets: Dataset | dict,
                 run_dir: str | os.PathLike, resume: bool = False,
                 log: Callable[[str], None] = print,
                 coords: Optional[dict[str, dict]] = None, **kwargs) -> pd.DataFrame:
    """A sweep of named variants: each variant is a `run_sweep` in `<run_dir>/<name>/`
    (resumable on its own), with a `variant` column and the variant's `coords`, if given, after
    `run` (first `variant`, unless `coords` places it). Returns the tables concatenated, runs
    renumbered 0.. across the variants, and writes that table to `<run_dir>/metrics.csv`.
    `datasets`: one for all, or {name: dataset}. Other keyword arguments go to every
    `run_sweep`."""
    run_dir = check_run_dir(run_dir)
    bad = [n for n in variants if not n or "/" in n or n.startswith(".")]
    if bad:
        raise ConfigError(f"variant names must be plain folder names, not {bad}")
    frames = []
    for name, cfg in variants.items():
        ds = datasets[name] if isinstance(datasets, dict) else datasets
        sub = run_dir / name
        t0 = time.perf_counter()
        log(f"variant {name}: {len(cfg.sweep.grid())} runs x {cfg.train.steps} steps on "
            f"{ds.name}")
        prefix = dict((coords or {}).get(name, {}))
        prefix = prefix if "variant" in prefix else dict(variant=name, **prefix)
        df = run_sweep(cfg, ds, sub, resume=resume and (sub / "config.json").exists(), log=log,
                       coords=prefix, **kwargs)
        log(f"variant {name} done in {time.perf_counter() - t0:.0f}s")
        frames.append(df)
    df = concat_variants(frames)
    if jax.process_index() == 0:
        tables.write_csv(df, run_dir / "metrics.csv")
    return df


def concat_variants(frames: list[pd.DataFrame], by: Sequence[str] = ("variant",)
                    ) -> pd.DataFrame:
    """Tables whose runs are numbered 0.. within each group of the columns `by` (a variant) as
    one table whose runs are numbered 0.. across the groups, in order."""
    df = pd.concat(frames, ignore_index=True)
    df["run"] = df.groupby([*by, "run"], sort=False).ngroup()
    return df

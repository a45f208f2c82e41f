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

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import jax
import pandas as pd

from jgrok import tables
from jgrok import reporting, sweep
from jgrok.checkpoint import Checkpoints, versions_kept
from jgrok.config import ExperimentConfig
from jgrok.data.split import Dataset
from jgrok.errors import ConfigError, Stopped
from jgrok.memory import tree_bytes

#: settings that may change between a sweep and its resumption
RESUMABLE_CHANGES = ("train.checkpoint_every", "train.keep_checkpoints",
                     "train.keep_checkpoint_every")
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


def _is_checkpoint_step(step: int, last_saved: int, cfg: ExperimentConfig) -> bool:
    return step == cfg.train.steps or step - last_saved >= cfg.train.checkpoint_every


class _StopRequest:
    signum: Optional[int] = None


@contextlib.contextmanager
def _stop_on_signals(signals=(signal.SIGTERM, signal.SIGINT)):
    """While the sweep trains, SIGTERM and SIGINT only record a stop request; the sweep saves a
    checkpoint at the next evaluation step and raises `Stopped`. Outside the main thread (where
    Python cannot install handlers) nothing changes."""
    req = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield req
        return

    def handler(signum, frame):
        if req.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: leave now
        req.signum = signum

    old = {s: signal.signal(s, handler) for s in signals}
    try:
        yield req
    finally:
        for s, h in old.items():
            signal.signal(s, h)


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


#: hook called after each evaluation: on_eval(step, state, metrics) -> None, or a dict of extra
#: per-run columns ({name: sequence of n_runs values}) added to that step's rows of metrics.csv
OnEval = Callable[[int, Any, dict], Optional[dict]]
#: per-step logger (the slingshot study): step_log(engine, state, n) -> (state after n steps,
#: {name: array (n_runs, n)}), values of steps `step .. step + n - 1`, written to steps.csv
StepLog = Callable[[Any, Any, int], tuple]


def _by_run_and_step(rows: list[dict]) -> pd.DataFrame:
    """Per-step rows as a table ordered by run, then step (whatever pieces they came in)."""
    df = pd.DataFrame(rows)
    return df.sort_values(["run", "step"], kind="stable", ignore_index=True) if len(df) else df


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
              tensorboard: bool = False) -> pd.DataFrame:
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
    silent. `tensorboard`: also write per-cell aggregates to `<run_dir>/tensorboard`.

    With `resume=True`, an existing run directory is continued from its newest readable
    checkpoint; a config (or evaluation schedule) that differs from the saved one is refused,
    naming the settings.
    """
    run_dir = check_run_dir(run_dir) if jax.process_index() == 0 else Path(run_dir)
    cfg_path = run_dir / "config.json"
    metrics_path = run_dir / "metrics.csv"
    steps_path = run_dir / "steps.csv"
    schedule = eval_schedule(cfg, eval_steps)
    cfg_dict = cfg.to_dict()
    if cfg_path.exists():
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

    engine = sweep.build_engine(cfg, dataset, devices, memory_limit=memory_limit)
    n_local = engine.n_padded // engine.mesh.devices.size
    # (on CPU, waves of one run are the default, not a memory limit: not worth a line)
    if 0 < engine.wave < n_local and (memory_limit or engine.mesh.devices.flat[0].platform
                                           != "cpu"):
        log(f"{n_local} runs per device, trained in waves of {engine.wave}")
    writer = jax.process_index() == 0
    state = sweep.init_state(engine)
    jax.block_until_ready(state)
    check_disk(run_dir, state, versions_kept(cfg.train),
               metrics_rows=engine.n_runs * len(schedule))
    if resume and writer:
        _remove_stale_temp_files(run_dir, log)
        _set_aside_itemless_checkpoints(run_dir, log)
    if jax.process_count() > 1:  # every process has checked the directory before any write
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("jgrok.run_sweep.start")
    ckpts = Checkpoints(run_dir, keep=cfg.train.keep_checkpoints,
                        keep_every=cfg.train.keep_checkpoint_every)
    start, rows, step_rows = 0, [], []
    if resume and ckpts.steps():
        step, restored = ckpts.restore_latest(state, warn=lambda m: log("WARNING: " + m),
                                             n_runs=engine.n_runs)
        if step is not None:
            try:
                rows = _rows_until(metrics_path, step, engine, schedule, run_dir, log)
                if step_log is not None:
                    step_rows = _rows_before(steps_path, step)
            except ConfigError:
                ckpts.close()
                raise
            start, state = step, restored
            log(f"resumed from the checkpoint at step {step} ({len(rows)} metric rows kept)")
        else:
            log("WARNING: no readable checkpoint; starting from scratch")
    elif not cfg_path.exists() or not resume:
        if writer:  # with several processes, only process 0 writes files
            tables.write_json(dict(config=cfg_dict, grid=engine.grid, versions=tables.versions(),
                                n_runs=engine.n_runs, dataset=dataset.name,
                                **({} if eval_steps is None else dict(eval_steps=schedule)),
                                **(extra_config or {})), cfg_path)

    last_saved = start
    prefix = dict(coords or {})

    def advance_logged(engine_, st, n, from_step):
        st, values = step_log(engine_, st, n)
        for i, g in enumerate(engine.grid):
            for t in range(n):
                step_rows.append(dict(run=i, **prefix, **g, step=from_step + t,
                                      **{k: float(v[i, t]) for k, v in values.items()}))
        return st

    # --- progress and live logs (jgrok.reporting) ---
    reporter = board = pacer = None
    if progress is not None and writer:
        platform = engine.mesh.devices.flat[0].platform
        # on a CPU, evaluating a big grid takes minutes: time the first steps before it
        reporter = reporting.SweepProgress(engine.n_runs, cfg.train.steps, start, schedule,
                                           platform, progress,
                                           defer_first_eval=platform == "cpu" and not rows)
        if rows:  # counts at the restored step, from the table
            at = max(r["step"] for r in rows)
            reporter.evaluated(at, {k: [r[k] for r in rows if r["step"] == at]
                                    for k in ("train_acc", "val_acc", "diverged")}, timed=False)
        if jax.process_count() == 1:  # pieces must be the same in every process
            pacer = reporter
    if tensorboard and writer:
        board = reporting.TensorBoardCells(run_dir / "tensorboard", engine.grid)

    def write_tables():
        tables.write_csv(pd.DataFrame(rows), metrics_path)
        if step_log is not None:
            tables.write_csv(_by_run_and_step(step_rows), steps_path)

    def save(step, st):
        nonlocal last_saved
        if writer:
            write_tables()
        ckpts.save(step, st)
        last_saved = step

    def on_piece(step, st):
        # a stop request between two evaluations saves the state at the step reached (the
        # table holds every evaluation before it), once the start step's rows are in
        if stop.signum is not None and rows and step not in schedule:
            save(step, st)
            ckpts.close()
            raise Stopped(stop.signum, step)
    # ---

    def record(step, st, m):
        if step == start and rows:
            return  # restored step: its rows are already in the table
        new = sweep.metric_rows(engine, step, m, extra_coords=prefix)
        extra = on_eval(step, st, m) if on_eval is not None else None
        for k, values in (extra or {}).items():
            for row, v in zip(new, values):  # plain Python values: the table reads back equal
                row[k] = v.item() if hasattr(v, "item") else v
        rows.extend(new)
        if reporter is not None:
            reporter.evaluated(step, m)
        if board is not None:
            board.add(step, m)
        # a stop request (SIGTERM/SIGINT) saves where we are, then leaves
        if step > start and (stop.signum is not None
                             or _is_checkpoint_step(step, last_saved, cfg)):
            save(step, st)
        if stop.signum is not None and not sweep.is_late(st):  # (a put-off evaluation's
            ckpts.close()                                       # stop is served by on_piece)
            raise Stopped(stop.signum, step)

    try:
        with _stop_on_signals() as stop:
            # (a restored step's rows are in the table: it is not evaluated again)
            state = sweep.run_to_step(engine, state, start,
                                      [s for s in schedule if s > start or not rows], record,
                                      pacer=pacer, on_piece=on_piece,
                                      advance_with=advance_logged if step_log else None)
    finally:
        for r in (reporter, board):
            if r is not None:
                r.close()
    if writer:
        write_tables()
    ckpts.close()
    return pd.DataFrame(rows)


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

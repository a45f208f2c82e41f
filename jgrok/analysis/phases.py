"""Phase classification of grokking runs from their accuracy curves.

Every run of a sweep gets exactly one of four phases (after Liu et al. 2022, "Towards
understanding grokking: an effective theory of representation learning"):

* ``confusion``     -- training accuracy never reaches ``fit_acc`` within the budget;
* ``memorization``  -- the run fits the training set but validation accuracy never reaches
  ``gen_acc`` within the budget;
* ``grokking``      -- the run generalizes *much later* than it fits
  (``gen_step >= grok_factor * max(fit_step, 1)``) **and** validation accuracy sat on a low
  plateau after fitting (below ``plateau_val_acc`` at every evaluation in
  ``[fit_step, plateau_factor * max(fit_step, 1)]``);
* ``comprehension`` -- every other run that generalizes. This is the documented catch-all:
  runs that generalize roughly together with fitting, and also runs with an intermediate
  delay or a long delay without a low plateau (e.g. a high-base late jump). Those
  non-canonical delayed runs are marked ``delayed=True``
  (``gen_step > comprehension_factor * max(fit_step, 1)``), and their curve shape is kept in the
  ``shape`` flags, so nothing is lost by the single label.

The *step* at which a curve reaches a threshold is the first evaluation step at which it does
(Power et al.'s "steps until 99% validation accuracy"); see :func:`first_step_reaching` for the
optional ``sustain`` rule.

Mixed curve shapes (after the ETH Zurich thesis on grokking curve shapes) are reported as three
boolean flags in :class:`ShapeFlags`. All of them describe *how* validation accuracy reached
``gen_acc``; they are False for runs that never fit or never generalize. Their rules use the
"final jump": the pre-jump point ``p`` is the last evaluation at or before
``gen_step / jump_span``, and the run has a final jump when
``val_acc(gen_step) - val_acc(p) >= jump_min``.

* ``two_step``: the level just before the final jump, ``val_acc(p)``, lies in
  ``[mid_low, mid_high]``; going back from ``p`` the curve stays within ``mid_tol`` of that level
  over a step ratio of at least ``mid_span`` (a flat intermediate plateau); that plateau starts
  at step ``q`` strictly after ``fit_step``; validation accuracy was at least ``first_rise``
  below the plateau level both at ``fit_step`` and at the last evaluation at or before
  ``q / jump_span`` (a sharp first jump after fitting, then a second jump to ``gen_acc``).
* ``high_base_late_jump``: validation accuracy at ``fit_step`` is already ``>= high_base`` (but
  below ``gen_acc``), ``gen_step >= late_factor * max(fit_step, 1)``, and there is a final jump.
* ``slow_rise_then_jump``: between ``fit_step`` and the pre-jump point ``p`` validation accuracy
  rises by at least ``slow_rise_min`` over a step ratio of at least ``slow_span``, gradually (no
  window of step ratio ``jump_span`` holds more than ``slow_max_share`` of that rise), roughly
  linearly (R^2 of a straight-line fit against step or against log step is at least
  ``slow_r2``), ending near its maximum (within ``mid_tol``); then there is a final jump.

All step ratios make the rules work the same on linearly and logarithmically spaced evaluations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from jgrok.errors import ConfigError

METRIC_COLUMNS = ("train_loss", "train_acc", "val_loss", "val_acc", "param_norm",
                  "last_layer_norm")
"""Per-evaluation measurements in the metrics table."""

NON_COORDINATE_COLUMNS = frozenset(METRIC_COLUMNS) | {"run", "step", "diverged", "diverged_step",
                                                       "wall_time"}
"""Columns of the metrics table that are not grid coordinates."""

SEED_COLUMNS = ("seed", "split_seed")
"""Coordinates that are replicated over; a grid cell is the other coordinates."""

PHASES = ("confusion", "memorization", "grokking", "comprehension")
"""The four phases, in the order used for tie-breaks and for plot legends."""

SHAPE_NAMES = ("two_step", "high_base_late_jump", "slow_rise_then_jump")
"""Names of the mixed-shape flags (fields of :class:`ShapeFlags`)."""

RUN_RESULT_COLUMNS = (
    "phase", "fit_step", "gen_step", "delay", "delay_ratio", "low_plateau", "delayed",
    "val_acc_at_fit", *SHAPE_NAMES, "final_train_acc", "final_val_acc", "final_step",
    "n_evals", "diverged")
"""Columns that :func:`classify_table` adds next to a run's grid coordinates."""


def coordinate_columns(df: pd.DataFrame) -> list[str]:
    """Grid-coordinate columns of a metrics table, in table order."""
    return [c for c in df.columns if c not in NON_COORDINATE_COLUMNS]


def cell_columns(columns: Sequence[str]) -> list[str]:
    """Coordinates minus the seed columns: what defines a grid cell."""
    return [c for c in columns if c not in SEED_COLUMNS]


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError(f"{what} lacks column(s) {', '.join(missing)}")


def first_step_reaching(steps, values, threshold: float, *, sustain: bool = False,
                        tolerance: float = 0.0) -> float:
    """First evaluation step at which ``values >= threshold``; NaN if never.

    Points are taken in step order; NaN values never count as reaching. With ``sustain=True``
    the answer is the first step at which the value reaches ``threshold`` *and* stays at or above
    ``threshold - tolerance`` at every later evaluation (so a transient crossing is ignored).
    """
    steps = np.asarray(steps, dtype=float)
    values = np.asarray(values, dtype=float)
    if steps.shape != values.shape or steps.ndim != 1:
        raise ConfigError("steps and values must be 1-d arrays of the same length")
    if steps.size == 0:
        return math.nan
    order = np.argsort(steps, kind="stable")
    steps, values = steps[order], values[order]
    with np.errstate(invalid="ignore"):
        reached = values >= threshold
        if sustain:
            ok = values >= threshold - tolerance
            stays = np.logical_and.accumulate(ok[::-1])[::-1]
            reached = reached & stays
    idx = np.flatnonzero(reached)
    return float(steps[idx[0]]) if idx.size else math.nan


@dataclass(frozen=True)
class PhaseThresholds:
    """Thresholds of the phase and shape rules (see the module docstring for the rules).

    Phase thresholds:
        fit_acc: training accuracy that counts as fitting the training set.
        gen_acc: validation accuracy that counts as generalizing.
        grok_factor: ``gen_step / max(fit_step, 1)`` at or above which a run with a low plateau
            is grokking.
        plateau_val_acc: validation accuracy below which the post-fit plateau counts as "low".
            0.5 = the model is still mostly wrong on held-out data after memorizing.
        plateau_factor: the low plateau must hold at every evaluation in
            ``[fit_step, plateau_factor * max(fit_step, 1)]``. The default 1.0 asks only that
            validation accuracy is still low when the training set is fit (the model has
            memorized, not generalized); grokking runs whose validation accuracy then rises
            slowly (the thesis' "slow rise capped by a jump") stay grokking, with the shape
            flag saying so. Raise it to demand a flat plateau after fitting.
        comprehension_factor: generalizing non-grokking runs with
            ``gen_step > comprehension_factor * max(fit_step, 1)`` are flagged ``delayed``.
        sustain, sustain_tolerance: passed to :func:`first_step_reaching` for fit and gen steps
            (default: the first step that reaches the threshold).

    Shape parameters:
        jump_span: the final jump is measured over the last factor ``jump_span`` in steps before
            ``gen_step``. jump_min: minimum rise of validation accuracy over that span.
        mid_low, mid_high, mid_tol, mid_span, first_rise: the two-step intermediate plateau.
        high_base, late_factor: the high-base late jump.
        slow_rise_min, slow_span, slow_max_share, slow_r2: the slow rise.
    """

    fit_acc: float = 0.99
    gen_acc: float = 0.99
    grok_factor: float = 10.0
    plateau_val_acc: float = 0.5
    plateau_factor: float = 1.0
    comprehension_factor: float = 2.0
    sustain: bool = False
    sustain_tolerance: float = 0.05
    # shapes
    jump_span: float = 2.0
    jump_min: float = 0.2
    mid_low: float = 0.2
    mid_high: float = 0.9
    mid_tol: float = 0.05
    mid_span: float = 2.0
    first_rise: float = 0.15
    high_base: float = 0.5
    late_factor: float = 10.0
    slow_rise_min: float = 0.15
    slow_span: float = 4.0
    slow_max_share: float = 0.5
    slow_r2: float = 0.8

    def __post_init__(self):
        if not (self.grok_factor >= 1 and self.plateau_factor >= 1
                and self.comprehension_factor >= 1 and self.jump_span > 1):
            raise ConfigError("grok_factor, plateau_factor, comprehension_factor must be >= 1 "
                              "and jump_span > 1")


@dataclass(frozen=True)
class ShapeFlags:
    """Mixed-shape flags of one run (rules in the module docstring)."""

    two_step: bool = False
    high_base_late_jump: bool = False
    slow_rise_then_jump: bool = False


@dataclass(frozen=True)
class RunPhase:
    """Classification of one run.

    ``delay = gen_step - fit_step`` and ``delay_ratio = gen_step / max(fit_step, 1)`` are NaN
    unless the run both fits and generalizes. ``low_plateau`` says whether validation accuracy
    sat below ``plateau_val_acc`` after fitting; ``delayed`` marks comprehension runs whose
    generalization lagged fitting by more than ``comprehension_factor``.
    """

    phase: str
    fit_step: float
    gen_step: float
    delay: float
    delay_ratio: float
    low_plateau: bool
    delayed: bool
    val_acc_at_fit: float
    final_train_acc: float
    final_val_acc: float
    shape: ShapeFlags = ShapeFlags()


def _last_finite(x: np.ndarray) -> float:
    idx = np.flatnonzero(np.isfinite(x))
    return float(x[idx[-1]]) if idx.size else math.nan


def _r2(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 3 or np.ptp(x) == 0:
        return 0.0
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0:
        return 0.0
    coef = np.polyfit(x, y, 1)
    ss_res = float(np.sum((y - np.polyval(coef, x)) ** 2))
    return 1.0 - ss_res / ss_tot


def _shape_flags(steps, val, fit_idx: int, gen_idx: int, t: PhaseThresholds) -> ShapeFlags:
    fit_step, gen_step = steps[fit_idx], steps[gen_idx]
    pre = np.flatnonzero(steps <= gen_step / t.jump_span)
    if pre.size == 0:
        return ShapeFlags()
    p = int(pre[-1])
    level = val[p]
    if not np.isfinite(level) or val[gen_idx] - level < t.jump_min:
        return ShapeFlags()
    v_fit = val[fit_idx]

    # two-step: flat intermediate plateau ending at p, starting after the fit
    two_step = False
    if t.mid_low <= level <= t.mid_high:
        q = p
        while q - 1 >= 0 and abs(val[q - 1] - level) <= t.mid_tol:
            q -= 1
        span = steps[p] / max(steps[q], 1e-12)
        before = np.flatnonzero(steps <= steps[q] / t.jump_span)
        sharp = bool(before.size and val[before[-1]] <= level - t.first_rise)
        two_step = bool(span >= t.mid_span and steps[q] > fit_step and sharp
                        and v_fit <= level - t.first_rise)

    high_base = bool(t.high_base <= v_fit < t.gen_acc
                     and gen_step >= t.late_factor * max(fit_step, 1.0))

    slow = False
    if p - fit_idx >= 2:
        seg_s, seg_v = steps[fit_idx:p + 1], val[fit_idx:p + 1]
        rise = seg_v[-1] - seg_v[0]
        span = seg_s[-1] / max(seg_s[0], 1.0)
        if (rise >= t.slow_rise_min and span >= t.slow_span and np.all(np.isfinite(seg_v))
                and seg_v[-1] >= seg_v.max() - t.mid_tol):
            ends = np.searchsorted(seg_s, t.jump_span * np.maximum(seg_s, 1.0), side="right")
            max_local = max(float(seg_v[i:ends[i]].max() - seg_v[i]) for i in range(seg_s.size))
            r2 = max(_r2(seg_s, seg_v), _r2(np.log(np.maximum(seg_s, 1.0)), seg_v))
            slow = bool(max_local <= t.slow_max_share * rise and r2 >= t.slow_r2)
    return ShapeFlags(two_step=two_step, high_base_late_jump=high_base, slow_rise_then_jump=slow)


def classify_run(steps, train_acc, val_acc,
                 thresholds: PhaseThresholds = PhaseThresholds()) -> RunPhase:
    """Classify one run from its evaluation steps and accuracy curves (rules: module doc)."""
    t = thresholds
    steps = np.asarray(steps, dtype=float)
    train_acc = np.asarray(train_acc, dtype=float)
    val_acc = np.asarray(val_acc, dtype=float)
    if not (steps.shape == train_acc.shape == val_acc.shape) or steps.ndim != 1:
        raise ConfigError("steps, train_acc and val_acc must be 1-d arrays of the same length")
    order = np.argsort(steps, kind="stable")
    steps, train_acc, val_acc = steps[order], train_acc[order], val_acc[order]
    final_train, final_val = _last_finite(train_acc), _last_finite(val_acc)
    nan = math.nan

    fit_step = first_step_reaching(steps, train_acc, t.fit_acc, sustain=t.sustain,
                                   tolerance=t.sustain_tolerance)
    if math.isnan(fit_step):
        return RunPhase("confusion", nan, nan, nan, nan, False, False, nan, final_train,
                        final_val)
    fit_idx = int(np.searchsorted(steps, fit_step, side="left"))
    v_fit = float(val_acc[fit_idx])
    window = (steps >= fit_step) & (steps <= t.plateau_factor * max(fit_step, 1.0))
    with np.errstate(invalid="ignore"):
        low_plateau = bool(np.all(val_acc[window] < t.plateau_val_acc))
    gen_step = first_step_reaching(steps, val_acc, t.gen_acc, sustain=t.sustain,
                                   tolerance=t.sustain_tolerance)
    if math.isnan(gen_step):
        return RunPhase("memorization", fit_step, nan, nan, nan, low_plateau, False, v_fit,
                        final_train, final_val)
    gen_idx = int(np.searchsorted(steps, gen_step, side="left"))
    ratio = gen_step / max(fit_step, 1.0)
    if ratio >= t.grok_factor and low_plateau:
        phase, delayed = "grokking", True
    else:
        phase, delayed = "comprehension", bool(ratio > t.comprehension_factor)
    shape = _shape_flags(steps, val_acc, fit_idx, gen_idx, t) if gen_idx > fit_idx else \
        ShapeFlags()
    return RunPhase(phase, fit_step, gen_step, gen_step - fit_step, ratio, low_plateau, delayed,
                    v_fit, final_train, final_val, shape)


def classify_table(df: pd.DataFrame,
                   thresholds: PhaseThresholds = PhaseThresholds()) -> pd.DataFrame:
    """One row per run: its grid coordinates, then :data:`RUN_RESULT_COLUMNS`.

    ``df`` is the tidy metrics table (one row per run x evaluation step). ``diverged`` is 1 if
    any evaluation of the run was marked diverged (0 when the column is absent).
    """
    _require(df, ("run", "step", "train_acc", "val_acc"), "metrics table")
    coords = coordinate_columns(df)
    rows = []
    for run, g in df.groupby("run", sort=True):
        g = g.sort_values("step", kind="stable")
        r = classify_run(g["step"].to_numpy(), g["train_acc"].to_numpy(),
                         g["val_acc"].to_numpy(), thresholds)
        row = {"run": run}
        for c in coords:
            row[c] = g[c].iloc[0]
        row.update(
            phase=r.phase, fit_step=r.fit_step, gen_step=r.gen_step, delay=r.delay,
            delay_ratio=r.delay_ratio, low_plateau=r.low_plateau, delayed=r.delayed,
            val_acc_at_fit=r.val_acc_at_fit,
            **{name: getattr(r.shape, name) for name in SHAPE_NAMES},
            final_train_acc=r.final_train_acc, final_val_acc=r.final_val_acc,
            final_step=float(g["step"].max()), n_evals=int(len(g)),
            diverged=int(g["diverged"].fillna(0).astype(float).max() > 0)
            if "diverged" in g else 0)
        rows.append(row)
    return pd.DataFrame(rows, columns=["run", *coords, *RUN_RESULT_COLUMNS])


def _cell_columns_of_run_table(run_table: pd.DataFrame) -> list[str]:
    coords = [c for c in run_table.columns if c != "run" and c not in RUN_RESULT_COLUMNS]
    return cell_columns(coords)


def aggregate_cells(run_table: pd.DataFrame) -> pd.DataFrame:
    """Per grid cell (coordinates minus ``seed``/``split_seed``), aggregate over its runs.

    Columns: the cell coordinates; ``n_seeds`` (runs in the cell); ``frac_<phase>`` for each of
    :data:`PHASES`; ``majority_phase`` (most frequent phase; ties broken in :data:`PHASES` order);
    ``agreement`` (fraction of runs in the majority phase) and ``n_majority``;
    ``n_generalized`` and ``gen_step_median``/``gen_step_q25``/``gen_step_q75`` over runs that
    generalized (NaN if none); ``fit_step_median``, ``delay_median`` and ``delay_ratio_median``
    over runs that fit/generalized; ``frac_<shape>`` for each mixed-shape flag.
    """
    _require(run_table, ("phase", "gen_step", "fit_step", "delay"), "run table")
    cells = _cell_columns_of_run_table(run_table)
    out_cols = [*cells, "n_seeds", *(f"frac_{p}" for p in PHASES), "majority_phase",
                "agreement", "n_majority", "n_generalized", "gen_step_median", "gen_step_q25",
                "gen_step_q75", "fit_step_median", "delay_median", "delay_ratio_median",
                *(f"frac_{s}" for s in SHAPE_NAMES)]
    if run_table.empty:
        return pd.DataFrame(columns=out_cols)
    groups = run_table.groupby(cells, sort=True, dropna=False) if cells else \
        [((), run_table)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        n = len(g)
        counts = g["phase"].value_counts()
        fracs = {p: float(counts.get(p, 0)) / n for p in PHASES}
        best = max(PHASES, key=lambda p: (counts.get(p, 0), -PHASES.index(p)))
        gen = g["gen_step"].astype(float).dropna()
        row = dict(zip(cells, key))
        row.update(n_seeds=n, **{f"frac_{p}": fracs[p] for p in PHASES},
                   majority_phase=best, agreement=fracs[best],
                   n_majority=int(counts.get(best, 0)), n_generalized=int(gen.size),
                   gen_step_median=float(gen.median()) if gen.size else math.nan,
                   gen_step_q25=float(gen.quantile(0.25)) if gen.size else math.nan,
                   gen_step_q75=float(gen.quantile(0.75)) if gen.size else math.nan,
                   fit_step_median=float(g["fit_step"].astype(float).median()),
                   delay_median=float(g["delay"].astype(float).median()),
                   delay_ratio_median=float(g["delay_ratio"].astype(float).median())
                   if "delay_ratio" in g else math.nan)
        for s in SHAPE_NAMES:
            row[f"frac_{s}"] = float(g[s].astype(float).mean()) if s in g else math.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=out_cols)


__all__ = [
    "METRIC_COLUMNS", "SEED_COLUMNS", "PHASES", "SHAPE_NAMES", "RUN_RESULT_COLUMNS",
    "PhaseThresholds", "ShapeFlags", "RunPhase", "first_step_reaching", "classify_run",
    "classify_table", "aggregate_cells", "coordinate_columns", "cell_columns",
]

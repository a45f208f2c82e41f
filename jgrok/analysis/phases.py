"""Phase classification of grokking runs from their accuracy curves.

A label is a claim about a run, so every label here follows from the run's curves under a rule
written down below; :class:`PhaseThresholds` names every number the rules use. Two rules are
available (``PhaseThresholds.rule``).

The plateau rule (``rule="plateau"``, the default)
--------------------------------------------------
``fit_step`` is the first evaluation at which training accuracy reaches ``fit_acc`` and
``gen_step`` the first at which validation accuracy reaches ``gen_acc`` (Power et al.'s "steps
until 99% accuracy"; see :func:`first_step_reaching` for the optional ``sustain`` rule).
A run **generalizes** only if it keeps it: when its validation accuracy at the last evaluation
is below ``hold_acc`` (0.9; ``gen_acc`` if that is lower), ``gen_step`` is NaN however often it
crossed ``gen_acc`` before, so a run that collapses after generalizing is not counted as
generalized. The check is at the end, not at every later evaluation, because loss spikes make
validation accuracy dip for an evaluation or two and recover; a run that ends generalized keeps
its first crossing as ``gen_step``.

``v_fit`` is validation accuracy at ``fit_step``. The *half-way level* is
``v_fit + (1 - v_fit) / 2`` and ``plateau_end_step`` the first evaluation at or after
``fit_step`` at which validation accuracy reaches it. Measuring from ``v_fit`` rather than from
chance handles commutative operations, whose validation accuracy after memorizing sits at the
share of held-out pairs whose mirror ``(y, x)`` is in the training set. The run **has a
plateau** when ``plateau_end_step >= plateau_factor * max(fit_step, 1)`` (or it never reaches
the half-way level). Every run gets exactly one of five phases:

* ``confusion``     -- training accuracy never reaches ``fit_acc`` within the budget;
* ``memorization``  -- it fits, but validation accuracy never reaches ``gen_acc``, or it does
  and ends below ``hold_acc``;
* ``grokking``      -- it fits, has a plateau, and generalizes late:
  ``gen_step >= delay_factor * max(fit_step, 1)``. Plateau, then jump;
* ``slow_rise``     -- it generalizes late (``gen_step > comprehension_factor *
  max(fit_step, 1)``) *without* the grokking signature: validation accuracy climbs past the
  half-way level before ``plateau_factor * fit_step``, or the climb ends before
  ``delay_factor * fit_step``. Slow creeps land here, never in ``grokking``;
* ``comprehension`` -- it generalizes together with fitting:
  ``gen_step <= comprehension_factor * max(fit_step, 1)`` (with evaluations at powers of two,
  one evaluation after the fit still counts as together).

Liu et al.'s rule (``rule="liu"``)
----------------------------------
After "Towards understanding grokking: an effective theory of representation learning" (Liu et
al. 2022) and the notebook ``phase_diagram_plot/simple_phase_diagram.ipynb`` of
ejmichaud/grokking-squared: the train (test) step is the first evaluation with training
(validation) accuracy ``>= liu_acc`` (0.9). ``comprehension`` when both are reached and
``test_step - train_step < liu_gap`` (1e3 steps), ``grokking`` when both are reached with a gap
``>= liu_gap``, ``memorization`` when only the train step is reached, ``confusion`` when
neither is (and, a case the notebook leaves unlabelled, when only the test step is). The gap
is absolute, in steps, so the rule depends on the step budget and learning rate; it has no
``slow_rise`` and, to reproduce the notebook, no ``hold_acc`` check. :func:`liu_phase`
applies it to ready-made steps.

Cells
-----
:func:`aggregate_cells` groups the runs of a grid cell (all coordinates except the seeds). A cell
whose runs disagree is ``mixed`` in ``cell_phase``; it is never settled in favour of one phase.
``majority_phase`` is the phase of strictly more runs than any other, or ``tie``.

Curve shapes
------------
Mixed curve shapes (after the ETH Zurich thesis on grokking curve shapes) are reported as three
boolean flags in :class:`ShapeFlags`, next to the phase. All of them describe *how* validation
accuracy reached ``gen_acc``; they are False for runs that never fit or never generalize. Their
rules use the "final jump": the pre-jump point ``p`` is the last evaluation at or before
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

# the tables' columns and the phase vocabulary live in jgrok.schema (re-exported here)
from jgrok.schema import (  # noqa: F401
    CELL_RESULT_COLUMNS, METRIC_COLUMNS, PHASE_LETTERS, PHASES, RUN_RESULT_COLUMNS, SEED_COLUMNS,
    SHAPE_NAMES, cell_columns, coordinate_columns, require_columns)

RULES = ("plateau", "liu")
"""Selectable phase rules (module docstring)."""


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
    """Every number the phase and shape rules use (rules: module docstring).

    Rule:
        rule: ``"plateau"`` (default) or ``"liu"``.

    Plateau rule:
        fit_acc: training accuracy that counts as fitting the training set (0.99).
        gen_acc: validation accuracy that counts as generalizing (0.99, Power et al.).
        hold_acc: validation accuracy a generalized run must still have at its last evaluation
            (0.9, Liu et al.'s level for generalized; ``gen_acc`` where that is lower, see
            ``hold_level``); below it the run has not generalized.
        plateau_factor: validation accuracy must stay below the half-way level (from its value
            at ``fit_step`` to 1) until at least ``plateau_factor * fit_step`` (5).
        delay_factor: a grokking run reaches ``gen_acc`` at ``>= delay_factor * fit_step`` (10).
        comprehension_factor: runs reaching ``gen_acc`` by ``comprehension_factor *
            fit_step`` are comprehension; later runs without the plateau are slow rise (2).
        sustain, sustain_tolerance: passed to :func:`first_step_reaching` for fit and gen steps
            (default: the first step that reaches the threshold).

    Liu et al.'s rule:
        liu_acc: accuracy that defines the train and test steps (0.9).
        liu_gap: ``test_step - train_step`` at or above which a run is grokking (1e3 steps).

    Shape parameters:
        jump_span: the final jump is measured over the last factor ``jump_span`` in steps before
            ``gen_step``. jump_min: minimum rise of validation accuracy over that span.
        mid_low, mid_high, mid_tol, mid_span, first_rise: the two-step intermediate plateau.
        high_base, late_factor: the high-base late jump.
        slow_rise_min, slow_span, slow_max_share, slow_r2: the slow rise.
    """

    rule: str = "plateau"
    fit_acc: float = 0.99
    gen_acc: float = 0.99
    hold_acc: float = 0.9
    plateau_factor: float = 5.0
    delay_factor: float = 10.0
    comprehension_factor: float = 2.0
    sustain: bool = False
    sustain_tolerance: float = 0.05
    liu_acc: float = 0.9
    liu_gap: float = 1e3
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
        if self.rule not in RULES:
            raise ConfigError(f"unknown phase rule {self.rule!r}; known: {', '.join(RULES)}")
        if not (self.delay_factor >= 1 and self.plateau_factor >= 1
                and self.comprehension_factor >= 1 and self.jump_span > 1):
            raise ConfigError("delay_factor, plateau_factor, comprehension_factor must be >= 1 "
                              "and jump_span > 1")
        if not (self.comprehension_factor <= self.delay_factor):
            raise ConfigError(f"comprehension_factor={self.comprehension_factor:g} must not "
                              f"exceed delay_factor={self.delay_factor:g}")
        if not (0 < self.fit_acc <= 1 and 0 < self.gen_acc <= 1 and 0 < self.liu_acc <= 1
                and self.liu_gap >= 0):
            raise ConfigError("fit_acc, gen_acc and liu_acc must be in (0, 1]; liu_gap >= 0")
        if not (0 <= self.hold_acc <= 1):
            raise ConfigError(f"hold_acc={self.hold_acc:g} must be in [0, 1]")

    @property
    def hold_level(self) -> float:
        """The validation accuracy a generalized run must end at: ``min(hold_acc, gen_acc)``."""
        return min(self.hold_acc, self.gen_acc)

    def describe(self) -> str:
        """One line stating the rule and its numbers, for table headers and figure notes."""
        if self.rule == "liu":
            return (f"Liu et al.'s rule: train/test step = first step with accuracy >= "
                    f"{self.liu_acc:g}; grokking when test - train >= {self.liu_gap:g} steps")
        return (f"plateau rule: fit/gen = train/val acc >= {self.fit_acc:g}/{self.gen_acc:g}, "
                f"gen only if final val acc >= {self.hold_level:g}; grokking = val below "
                f"half-way (from its value at fit to 1) until >= "
                f"{self.plateau_factor:g}x fit and gen >= {self.delay_factor:g}x fit; "
                f"comprehension = gen <= {self.comprehension_factor:g}x fit; else slow_rise")


PHASE_RULE_FILE = "phase_rule.json"
"""The file beside a run directory's ``phases.csv`` that records the thresholds of its labels."""


def write_phase_rule(thresholds: PhaseThresholds, out_dir) -> str:
    """Write ``thresholds`` (every field) to ``<out_dir>/phase_rule.json``; returns the path."""
    import dataclasses
    import os

    from jgrok import tables

    path = os.path.join(os.fspath(out_dir), PHASE_RULE_FILE)
    tables.write_json(dataclasses.asdict(thresholds), path)
    return path


def read_phase_rule(run_dir) -> PhaseThresholds:
    """The thresholds a run directory's labels follow: its ``phase_rule.json``, or the defaults
    where it has none (directories labelled before the file existed)."""
    import json
    import os

    path = os.path.join(os.fspath(run_dir), PHASE_RULE_FILE)
    if not os.path.exists(path):
        return PhaseThresholds()
    with open(path) as f:
        fields = json.load(f)
    known = set(PhaseThresholds.__dataclass_fields__)
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown threshold(s) {', '.join(unknown)}")
    return PhaseThresholds(**fields)


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
    unless the run both fits and generalizes. ``plateau`` says whether validation accuracy stayed
    below the half-way level until ``plateau_factor * fit_step``; ``plateau_end_step`` is the
    first step at or after the fit at which it reached that level (NaN if never). Under Liu et
    al.'s rule, fit and gen steps are the 0.9 train and test steps and ``plateau`` is False.
    """

    phase: str
    fit_step: float
    gen_step: float
    delay: float
    delay_ratio: float
    val_acc_at_fit: float
    plateau: bool
    plateau_end_step: float
    final_train_acc: float
    final_val_acc: float
    shape: ShapeFlags = ShapeFlags()


def liu_phase(train_step: float, test_step: float, gap: float = 1e3) -> str:
    """Liu et al.'s phase from the steps at which train and test accuracy first reached the
    threshold (NaN: never within the budget). Rule: module docstring."""
    train_ok, test_ok = not math.isnan(train_step), not math.isnan(test_step)
    if train_ok and test_ok:
        return "comprehension" if test_step - train_step < gap else "grokking"
    if train_ok:
        return "memorization"
    return "confusion"


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
    fit_acc, gen_acc = (t.liu_acc, t.liu_acc) if t.rule == "liu" else (t.fit_acc, t.gen_acc)
    fit_step = first_step_reaching(steps, train_acc, fit_acc, sustain=t.sustain,
                                   tolerance=t.sustain_tolerance)
    gen_step = first_step_reaching(steps, val_acc, gen_acc, sustain=t.sustain,
                                   tolerance=t.sustain_tolerance)
    if t.rule == "plateau" and not final_val >= t.hold_level:
        gen_step = nan  # crossed gen_acc but did not keep it (or no finite evaluation)
    fitted, generalized = not math.isnan(fit_step), not math.isnan(gen_step)
    both = fitted and generalized
    delay = gen_step - fit_step if both else nan
    ratio = gen_step / max(fit_step, 1.0) if both else nan
    fit_idx = int(np.searchsorted(steps, fit_step)) if fitted else -1
    v_fit = float(val_acc[fit_idx]) if fitted else nan
    if t.rule == "liu":
        return RunPhase(liu_phase(fit_step, gen_step, t.liu_gap), fit_step, gen_step, delay,
                        ratio, v_fit, False, nan, final_train, final_val)
    if not fitted:
        return RunPhase("confusion", nan, nan, nan, nan, nan, False, nan, final_train, final_val)
    half = v_fit + 0.5 * (1.0 - v_fit)
    with np.errstate(invalid="ignore"):
        above = np.flatnonzero((steps >= fit_step) & (val_acc >= half))
    plateau_end = float(steps[above[0]]) if above.size else nan
    plateau = bool(math.isnan(plateau_end)
                   or plateau_end >= t.plateau_factor * max(fit_step, 1.0))
    if not generalized:
        return RunPhase("memorization", fit_step, nan, nan, nan, v_fit, plateau, plateau_end,
                        final_train, final_val)
    if plateau and ratio >= t.delay_factor:
        phase = "grokking"
    elif ratio > t.comprehension_factor:
        phase = "slow_rise"
    else:
        phase = "comprehension"
    gen_idx = int(np.searchsorted(steps, gen_step))
    shape = _shape_flags(steps, val_acc, fit_idx, gen_idx, t) if gen_idx > fit_idx else \
        ShapeFlags()
    return RunPhase(phase, fit_step, gen_step, delay, ratio, v_fit, plateau, plateau_end,
                    final_train, final_val, shape)


def classify_table(df: pd.DataFrame,
                   thresholds: PhaseThresholds = PhaseThresholds()) -> pd.DataFrame:
    """One row per run: its grid coordinates, then :data:`RUN_RESULT_COLUMNS`.

    ``df`` is the tidy metrics table (one row per run x evaluation step). ``diverged`` is 1 if
    any evaluation of the run was marked diverged (0 when the column is absent).
    """
    require_columns(df, ("run", "step", "train_acc", "val_acc"))
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
            delay_ratio=r.delay_ratio, val_acc_at_fit=r.val_acc_at_fit, plateau=r.plateau,
            plateau_end_step=r.plateau_end_step,
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


def phase_counts(phases: Sequence[str]) -> str:
    """``"2G 1M"``: how many runs are in each phase (letters: :data:`PHASE_LETTERS`), most
    frequent first, ties in :data:`PHASES` order."""
    counts = pd.Series(list(phases)).value_counts()
    order = sorted(counts.index, key=lambda p: (-counts[p], PHASES.index(p)
                                                if p in PHASES else len(PHASES)))
    return " ".join(f"{int(counts[p])}{PHASE_LETTERS.get(p, p)}" for p in order)


def aggregate_cells(run_table: pd.DataFrame) -> pd.DataFrame:
    """Per grid cell (coordinates minus ``seed``/``split_seed``), aggregate over its runs.

    Columns: the cell coordinates, then :data:`CELL_RESULT_COLUMNS`: ``n_seeds`` (runs in the
    cell); ``n_<phase>`` and ``frac_<phase>`` for each of :data:`PHASES`; ``cell_phase`` (the
    phase when every run agrees, else ``mixed``); ``counts`` (e.g. ``2G 2M``); ``majority_phase``
    (the phase of strictly more runs than any other, else ``tie``) and ``agreement`` (share of
    the most frequent phase); ``n_generalized`` and ``gen_step_median``/``_q25``/``_q75`` over
    runs that generalized (NaN if none); ``fit_step_median``, ``delay_median`` and
    ``delay_ratio_median`` over runs that fit/generalized; ``final_val_acc_median`` (the
    near-misses: how close the cell came); ``frac_<shape>`` for each mixed-shape flag.
    """
    require_columns(run_table, ("phase", "gen_step", "fit_step", "delay"), "run table")
    cells = _cell_columns_of_run_table(run_table)
    out_cols = [*cells, *CELL_RESULT_COLUMNS]
    if run_table.empty:
        return pd.DataFrame(columns=out_cols)
    groups = run_table.groupby(cells, sort=True, dropna=False) if cells else \
        [((), run_table)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        n = len(g)
        counts = g["phase"].value_counts()
        top = int(counts.max())
        leaders = [p for p in counts.index if counts[p] == top]
        gen = g["gen_step"].astype(float).dropna()
        row = dict(zip(cells, key))
        row.update(n_seeds=n, **{f"n_{p}": int(counts.get(p, 0)) for p in PHASES},
                   **{f"frac_{p}": float(counts.get(p, 0)) / n for p in PHASES},
                   cell_phase=leaders[0] if top == n else "mixed",
                   counts=phase_counts(g["phase"]),
                   majority_phase=leaders[0] if len(leaders) == 1 else "tie",
                   agreement=top / n, n_generalized=int(gen.size),
                   gen_step_median=float(gen.median()) if gen.size else math.nan,
                   gen_step_q25=float(gen.quantile(0.25)) if gen.size else math.nan,
                   gen_step_q75=float(gen.quantile(0.75)) if gen.size else math.nan,
                   fit_step_median=float(g["fit_step"].astype(float).median()),
                   delay_median=float(g["delay"].astype(float).median()),
                   delay_ratio_median=float(g["delay_ratio"].astype(float).median())
                   if "delay_ratio" in g else math.nan,
                   final_val_acc_median=float(g["final_val_acc"].astype(float).median())
                   if "final_val_acc" in g else math.nan)
        for s in SHAPE_NAMES:
            row[f"frac_{s}"] = float(g[s].astype(float).mean()) if s in g else math.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=out_cols)


__all__ = [
    "METRIC_COLUMNS", "SEED_COLUMNS", "PHASES", "PHASE_LETTERS", "RULES", "SHAPE_NAMES",
    "RUN_RESULT_COLUMNS", "CELL_RESULT_COLUMNS", "PhaseThresholds", "ShapeFlags", "RunPhase",
    "first_step_reaching", "liu_phase", "classify_run", "classify_table", "aggregate_cells",
    "phase_counts", "coordinate_columns", "cell_columns", "PHASE_RULE_FILE", "write_phase_rule",
    "read_phase_rule",
]

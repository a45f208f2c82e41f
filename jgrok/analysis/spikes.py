"""Training-loss spikes (the "slingshot" effect, Thilak et al. 2022).

A spike point is an evaluation whose training loss exceeds ``factor`` times the median training
loss of the previous ``window`` non-spike evaluations (equivalently, on log loss: exceeds the
running median of log loss by ``log(factor)``). Only evaluations at or after the fit step are
candidates (all evaluations when no fit step is given); earlier points only serve as baseline.
Consecutive spike points merge into one spike event. Non-finite losses are skipped (neither
candidates nor baseline); losses are clipped at 1e-30 before taking logs.

A spike is *followed by a validation jump* when validation accuracy rises by at least
``val_jump`` above its value just before the spike, at some evaluation from the spike's start
up to ``follow_window`` evaluations after its last point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from jgrok.analysis.phases import PhaseThresholds, first_step_reaching
from jgrok.errors import ConfigError
from jgrok.schema import coordinate_columns, require_columns

_MIN_BASELINE = 2  # baseline points needed before a point can be judged


@dataclass(frozen=True)
class Spike:
    """One spike event.

    step: first spike evaluation; peak_step: evaluation with the highest loss in the event;
    size: peak loss / baseline median; val_jump_step: evaluation at which the following
    validation jump is first seen (None if none); end_step: last spike evaluation;
    baseline: the baseline median loss; peak_loss: the loss at ``peak_step``.
    """

    step: float
    peak_step: float
    size: float
    val_jump_step: Optional[float] = None
    end_step: float = math.nan
    baseline: float = math.nan
    peak_loss: float = math.nan

    @property
    def followed_by_val_jump(self) -> bool:
        return self.val_jump_step is not None


def _spike_events(steps, loss, factor, window, fit_step):
    """Return [(start_idx, end_idx, baseline)] of merged spike events (indices into arrays)."""
    log_loss = np.log(np.clip(loss, 1e-30, None))
    thresh = math.log(factor)
    baseline_pts: list[float] = []  # log losses of recent non-spike finite points
    events = []
    cur = None  # [start, end, baseline_log]
    for i in range(steps.size):
        if not np.isfinite(loss[i]):
            continue
        is_spike = False
        if steps[i] >= fit_step and len(baseline_pts) >= min(_MIN_BASELINE, window):
            base = float(np.median(baseline_pts[-window:]))
            is_spike = log_loss[i] - base > thresh
        if is_spike:
            if cur is None:
                cur = [i, i, base]
            else:
                cur[1] = i
        else:
            if cur is not None:
                events.append(tuple(cur))
                cur = None
            baseline_pts.append(float(log_loss[i]))
    if cur is not None:
        events.append(tuple(cur))
    return events


def detect_spikes(steps, train_loss, factor: float = 10.0, window: int = 5,
                  fit_step: Optional[float] = None, val_acc=None, val_jump: float = 0.1,
                  follow_window: int = 10, min_peak_loss: float = 1e-4) -> list[Spike]:
    """Find training-loss spikes at or after ``fit_step`` (rules in the module docstring).

    A spike whose peak loss stays below ``min_peak_loss`` is dropped: float32 cross-entropy of a
    fitted model sits at 1e-8..1e-6, where a "10x jump" is rounding noise, not a slingshot."""
    if factor <= 1 or window < 1 or follow_window < 0:
        raise ConfigError("need factor > 1, window >= 1 and follow_window >= 0")
    steps = np.asarray(steps, dtype=float)
    loss = np.asarray(train_loss, dtype=float)
    if steps.shape != loss.shape or steps.ndim != 1:
        raise ConfigError("steps and train_loss must be 1-d arrays of the same length")
    order = np.argsort(steps, kind="stable")
    steps, loss = steps[order], loss[order]
    val = None
    if val_acc is not None:
        val = np.asarray(val_acc, dtype=float)
        if val.shape != order.shape:
            raise ConfigError("val_acc must have the same length as steps")
        val = val[order]
    if fit_step is None or (isinstance(fit_step, float) and math.isnan(fit_step)):
        start = -math.inf if fit_step is None else math.inf
    else:
        start = float(fit_step)
    spikes = []
    for s, e, base in _spike_events(steps, loss, factor, window, start):
        seg = loss[s:e + 1]
        k = s + int(np.nanargmax(seg))
        if not loss[k] >= min_peak_loss:
            continue
        baseline = math.exp(base)
        jump_step = None
        if val is not None:
            ref = val[s - 1] if s > 0 else val[s]
            hi = min(val.size, e + 1 + follow_window)
            if np.isfinite(ref):
                with np.errstate(invalid="ignore"):
                    hits = np.flatnonzero(val[s:hi] >= ref + val_jump)
                if hits.size:
                    jump_step = float(steps[s + hits[0]])
        spikes.append(Spike(step=float(steps[s]), peak_step=float(steps[k]),
                            size=float(loss[k] / baseline), val_jump_step=jump_step,
                            end_step=float(steps[e]), baseline=baseline,
                            peak_loss=float(loss[k])))
    return spikes


SPIKE_COLUMNS = ("run", "step", "peak_step", "end_step", "size", "baseline_loss", "peak_loss",
                 "followed_by_val_jump", "val_jump_step", "last_layer_norm",
                 "last_layer_norm_before", "last_layer_norm_after", "last_layer_norm_change",
                 "last_layer_norm_rel_change")


def spikes_table(df: pd.DataFrame, factor: float = 10.0, window: int = 5,
                 val_jump: float = 0.1, follow_window: int = 10, min_peak_loss: float = 1e-4,
                 thresholds: PhaseThresholds = PhaseThresholds()) -> pd.DataFrame:
    """One row per spike over all runs of a metrics table.

    The fit step of each run is the first evaluation with ``train_acc >= thresholds.fit_acc``;
    runs that never fit have no spikes (when ``train_acc`` is absent, every evaluation is a
    candidate). Columns: ``run``, the grid coordinates, then the rest of :data:`SPIKE_COLUMNS`.
    ``last_layer_norm`` is taken at the spike's first evaluation, ``_before`` at the evaluation just before the spike
    and ``_after`` at the first evaluation after it (the last one if the spike ends the run);
    ``_change = after - before`` and ``_rel_change = change / before`` (NaN without the column).
    """
    require_columns(df, ("run", "step", "train_loss"))
    coords = coordinate_columns(df)
    rows = []
    for run, g in df.groupby("run", sort=True):
        g = g.sort_values("step", kind="stable")
        steps = g["step"].to_numpy(dtype=float)
        fit_step = None
        if "train_acc" in g:
            fit_step = first_step_reaching(steps, g["train_acc"].to_numpy(dtype=float),
                                           thresholds.fit_acc)
            if math.isnan(fit_step):
                continue
        val = g["val_acc"].to_numpy(dtype=float) if "val_acc" in g else None
        spikes = detect_spikes(steps, g["train_loss"].to_numpy(dtype=float), factor=factor,
                               window=window, fit_step=fit_step, val_acc=val,
                               val_jump=val_jump, follow_window=follow_window,
                               min_peak_loss=min_peak_loss)
        norm = g["last_layer_norm"].to_numpy(dtype=float) if "last_layer_norm" in g else None
        for sp in spikes:
            row = {c: g[c].iloc[0] for c in coords}
            s = int(np.searchsorted(steps, sp.step))
            e = int(np.searchsorted(steps, sp.end_step))
            if norm is not None:
                at, before = norm[s], norm[max(s - 1, 0)]
                after = norm[min(e + 1, norm.size - 1)]
            else:
                at = before = after = math.nan
            change = after - before
            row.update(run=run, step=sp.step, peak_step=sp.peak_step, end_step=sp.end_step,
                       size=sp.size, baseline_loss=sp.baseline, peak_loss=sp.peak_loss,
                       followed_by_val_jump=sp.followed_by_val_jump,
                       val_jump_step=sp.val_jump_step if sp.val_jump_step is not None
                       else math.nan,
                       last_layer_norm=at, last_layer_norm_before=before,
                       last_layer_norm_after=after, last_layer_norm_change=change,
                       last_layer_norm_rel_change=change / before
                       if before not in (0.0,) and np.isfinite(before) else math.nan)
            rows.append(row)
    return pd.DataFrame(rows, columns=["run", *coords, *SPIKE_COLUMNS[1:]])


def per_step_spikes(loss, norm, factor: float = 10.0, window: int = 50,
                    fit_loss: float = 1e-2) -> list[dict]:
    """Spikes of one run's PER-STEP training loss (``loss[t]`` at step ``t``, as recorded by
    ``jgrok.slingshot.advance_logged``) and the last-layer norm ``norm`` around each.

    Spikes are :func:`detect_spikes` with ``factor`` and ``window``, from the first step whose
    loss is below ``fit_loss``. With a value at every step, the norm around a spike is measured
    as rates over ``window`` steps (where :func:`spikes_table`, on evaluations, takes the
    evaluations just before and after): ``norm_before`` at the step before the spike,
    ``norm_rate_before`` its growth per step over the ``window`` steps before,
    ``norm_rate_across`` from just before the spike to ``window`` steps after its end, where
    ``norm_after`` is taken; ``norm_rel_change = (after - before) / before``."""
    loss = np.asarray(loss)
    norm = np.asarray(norm)
    steps = np.arange(loss.size)
    below = np.flatnonzero(loss < fit_loss)
    if not below.size:
        return []
    fit = float(steps[below[0]])
    rows = []
    w = window
    for sp in detect_spikes(steps, loss, factor=factor, window=w, fit_step=fit):
        s, e = int(sp.step), int(sp.end_step)
        before = norm[max(s - 1, 0)]
        earlier = norm[max(s - 1 - w, 0)]
        after = norm[min(e + w, norm.size - 1)]
        rows.append(dict(fit_step=fit, step=sp.step, peak_step=sp.peak_step,
                         end_step=sp.end_step, size=sp.size, peak_loss=sp.peak_loss,
                         baseline_loss=sp.baseline, norm_before=before,
                         norm_rate_before=(before - earlier) / max(s - 1 - max(s - 1 - w, 0), 1),
                         norm_rate_across=(after - before) / max(min(e + w, norm.size - 1)
                                                                 - (s - 1), 1),
                         norm_after=after,
                         norm_rel_change=(after - before) / before if before else math.nan))
    return rows


__all__ = ["Spike", "detect_spikes", "per_step_spikes", "spikes_table", "SPIKE_COLUMNS"]

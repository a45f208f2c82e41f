import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jgrok.analysis import detect_spikes, spikes_table
from jgrok.errors import ConfigError

STEPS = np.concatenate([[0.0], np.unique(np.round(np.logspace(0, 5, 120)))])
N = STEPS.size


def smooth_loss():
    return 5.0 / (1.0 + STEPS / 50.0) ** 1.5 + 1e-4


def with_spike(loss, idx, mult):
    loss = loss.copy()
    for i, m in zip(np.atleast_1d(idx), np.atleast_1d(mult)):
        loss[i] *= m
    return loss


def test_single_planted_spike():
    loss = smooth_loss()
    i = 80
    spikes = detect_spikes(STEPS, with_spike(loss, i, 50.0), fit_step=STEPS[40])
    assert len(spikes) == 1
    sp = spikes[0]
    assert sp.step == STEPS[i] and sp.peak_step == STEPS[i] and sp.end_step == STEPS[i]
    expected = 50.0 * loss[i] / np.median(loss[i - 5:i])
    assert sp.size == pytest.approx(expected, rel=1e-6)
    assert 30 < sp.size <= 50
    assert sp.val_jump_step is None and not sp.followed_by_val_jump


def test_consecutive_points_merge_into_one_spike():
    loss = with_spike(smooth_loss(), [70, 71, 72], [20.0, 100.0, 30.0])
    loss = with_spike(loss, 100, 40.0)
    spikes = detect_spikes(STEPS, loss, fit_step=STEPS[30])
    assert [s.step for s in spikes] == [STEPS[70], STEPS[100]]
    first = spikes[0]
    assert first.peak_step == STEPS[71] and first.end_step == STEPS[72]
    assert first.size == pytest.approx(100.0 * smooth_loss()[71] / first.baseline)
    assert 40 < first.size <= 100  # baseline = median of the 5 points before the spike


def test_factor_and_window_honoured():
    loss = with_spike(smooth_loss(), 80, 5.0)
    assert detect_spikes(STEPS, loss, factor=10.0) == []
    assert len(detect_spikes(STEPS, loss, factor=3.0)) == 1
    with pytest.raises(ConfigError):
        detect_spikes(STEPS, loss, factor=0.5)


def test_val_jump_follow_up():
    loss = with_spike(smooth_loss(), 80, 50.0)
    val = np.full(N, 0.4)
    val[84:] = 0.95
    (sp,) = detect_spikes(STEPS, loss, val_acc=val, val_jump=0.1, follow_window=5)
    assert sp.val_jump_step == STEPS[84] and sp.followed_by_val_jump
    # jump outside the follow window, or too small
    (sp,) = detect_spikes(STEPS, loss, val_acc=val, follow_window=2)
    assert sp.val_jump_step is None
    (sp,) = detect_spikes(STEPS, loss, val_acc=val, val_jump=0.6, follow_window=5)
    assert sp.val_jump_step is None


def test_no_spikes_on_smooth_or_before_fit():
    assert detect_spikes(STEPS, smooth_loss()) == []
    assert detect_spikes(STEPS, np.exp(-STEPS / 1e3)) == []  # steep decrease
    loss = with_spike(smooth_loss(), 20, 100.0)
    assert detect_spikes(STEPS, loss, fit_step=STEPS[50]) == []
    assert len(detect_spikes(STEPS, loss)) == 1  # no fit step: candidates from step 0
    assert detect_spikes(STEPS, loss, fit_step=math.nan) == []  # never fit
    assert detect_spikes([], []) == []


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(1e-3, 1.0), min_size=2, max_size=60), st.floats(1e-6, 1e3))
def test_monotone_decreasing_has_no_spikes(decrements, start):
    loss = start * np.cumprod(decrements)
    steps = np.arange(loss.size) * 10
    assert detect_spikes(steps, loss, factor=1.5, window=3) == []


def _table():
    rows = []
    base = smooth_loss()
    for run in range(3):
        loss = base.copy()
        if run == 1:
            loss = with_spike(loss, [80, 81], [30.0, 60.0])
        train_acc = np.where(STEPS >= STEPS[30], 1.0, 0.5)
        if run == 2:
            train_acc = np.full(N, 0.5)  # never fits: no spikes counted
            loss = with_spike(loss, 80, 60.0)
        val = np.where(STEPS >= STEPS[84], 0.99, 0.2)
        norm = np.where(STEPS >= STEPS[82], 5.0, 10.0)
        for i, s in enumerate(STEPS):
            rows.append(dict(run=run, seed=run, split_seed=0, fraction=0.5,
                             weight_decay=1.0, variant="a", step=s, train_loss=loss[i],
                             train_acc=train_acc[i], val_acc=val[i], val_loss=1.0,
                             last_layer_norm=norm[i]))
    return pd.DataFrame(rows)


def test_spikes_table():
    t = spikes_table(_table())
    assert len(t) == 1
    r = t.iloc[0]
    assert r["run"] == 1 and r["seed"] == 1 and r["variant"] == "a" and r["fraction"] == 0.5
    assert r["step"] == STEPS[80] and r["peak_step"] == STEPS[81] and r["end_step"] == STEPS[81]
    assert r["followed_by_val_jump"] and r["val_jump_step"] == STEPS[84]
    assert r["last_layer_norm"] == 10.0 and r["last_layer_norm_before"] == 10.0
    assert r["last_layer_norm_after"] == 5.0 and r["last_layer_norm_change"] == -5.0
    assert r["last_layer_norm_rel_change"] == pytest.approx(-0.5)
    empty = spikes_table(_table().query("run == 0"))
    assert empty.empty and "followed_by_val_jump" in empty.columns


def test_jumps_at_float32_rounding_level_are_not_spikes():
    steps = np.arange(0, 400, 10.0)
    loss = np.full(steps.shape, 1e-8)
    loss[20] = 2e-7  # 20x, but rounding noise of a fitted float32 model
    loss[30] = 5e-2  # a real spike
    found = detect_spikes(steps, loss, fit_step=0.0)
    assert [s.step for s in found] == [300.0]
    assert detect_spikes(steps, loss, fit_step=0.0, min_peak_loss=1e-9)[0].step == 200.0


def test_per_step_spikes_finds_a_planted_spike_and_the_norm_around_it():
    from jgrok.analysis.spikes import per_step_spikes

    loss = np.full(400, 1e-3)
    loss[:50] = np.linspace(2.0, 0.02, 50)  # fits (loss < 1e-2) at step 50
    loss[200:205] = [0.5, 2.0, 1.0, 0.1, 0.01]
    norm = np.linspace(1.0, 5.0, 400)
    rows = per_step_spikes(loss, norm, factor=10, window=20, fit_loss=1e-2)
    assert len(rows) == 1
    r = rows[0]
    assert (r["fit_step"], r["step"], r["peak_step"]) == (50.0, 200.0, 201.0)
    assert r["size"] == pytest.approx(2.0 / 1e-3)
    rate = (5.0 - 1.0) / 399
    assert r["norm_before"] == pytest.approx(norm[199])
    assert r["norm_rate_before"] == pytest.approx(rate)
    assert r["norm_rate_across"] == pytest.approx(rate)
    assert per_step_spikes(np.ones(100), np.ones(100)) == []  # never fits: no spikes

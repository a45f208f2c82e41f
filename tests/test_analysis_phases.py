import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jgrok.analysis import (PHASES, PhaseThresholds, aggregate_cells, classify_run,
                            classify_table, first_step_reaching)
from jgrok.errors import ConfigError

STEPS = np.concatenate([[0.0], np.unique(np.round(np.logspace(0, 5, 160)))])
W = 0.04  # sigmoid width in decades


def sig(center, width=W, steps=STEPS):
    z = (np.log10(np.maximum(steps, 1.0)) - math.log10(center)) / width
    return 1.0 / (1.0 + np.exp(-z))


def train_curve(center=100.0, top=1.0):
    return 0.01 + (top - 0.01) * sig(center)


# --- the four phases and the mixed shapes, each with a known answer -----------------------
def curves():
    tr = train_curve(100)
    return {
        "confusion": (train_curve(100, top=0.6), 0.02 + 0.1 * sig(1e3)),
        "memorization": (tr, 0.05 + 0.0 * STEPS),
        "grokking": (tr, 0.05 + 0.95 * sig(1e4)),
        "comprehension": (tr, 0.05 + 0.95 * sig(120)),
        "two_step": (tr, 0.05 + 0.45 * sig(1e3) + 0.5 * sig(3e4)),
        "high_base": (tr, 0.6 * sig(80) + 0.4 * sig(1e4)),
        "slow_rise": (tr, 0.05 + 0.4 * np.clip((np.log10(np.maximum(STEPS, 1)) - math.log10(200))
                                                / math.log10(150), 0, 1) + 0.55 * sig(6e4)),
    }


EXPECTED = {
    # name: (phase, two_step, high_base_late_jump, slow_rise_then_jump)
    "confusion": ("confusion", False, False, False),
    "memorization": ("memorization", False, False, False),
    "grokking": ("grokking", False, False, False),
    "comprehension": ("comprehension", False, False, False),
    "two_step": ("grokking", True, False, False),
    "high_base": ("comprehension", False, True, False),
    "slow_rise": ("grokking", False, False, True),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_phase_and_shape_known_answers(name):
    tr, va = curves()[name]
    r = classify_run(STEPS, tr, va)
    phase, two, high, slow = EXPECTED[name]
    assert r.phase == phase
    assert (r.shape.two_step, r.shape.high_base_late_jump, r.shape.slow_rise_then_jump) == \
        (two, high, slow)


def test_steps_delay_and_flags():
    c = curves()
    g = classify_run(STEPS, *c["grokking"])
    # train centre 100 -> 0.99 reached ~1.3x later; val centre 1e4 likewise
    assert 100 <= g.fit_step <= 200 and 1e4 <= g.gen_step <= 2e4
    assert g.delay == pytest.approx(g.gen_step - g.fit_step)
    assert g.delay_ratio == pytest.approx(g.gen_step / g.fit_step)
    assert g.low_plateau and g.delayed
    comp = classify_run(STEPS, *c["comprehension"])
    assert comp.delay_ratio < 2 and not comp.delayed
    hb = classify_run(STEPS, *c["high_base"])
    assert hb.delayed and not hb.low_plateau and hb.val_acc_at_fit >= 0.5
    conf = classify_run(STEPS, *c["confusion"])
    assert math.isnan(conf.fit_step) and math.isnan(conf.gen_step) and math.isnan(conf.delay)
    mem = classify_run(STEPS, *c["memorization"])
    assert not math.isnan(mem.fit_step) and math.isnan(mem.gen_step)
    assert mem.final_val_acc == pytest.approx(0.05)


def test_thresholds_are_honoured():
    c = curves()
    # grok_factor: a ~100x delay is not grokking when 1000x is required
    assert classify_run(STEPS, *c["grokking"], PhaseThresholds(grok_factor=1000)).phase == \
        "comprehension"
    # plateau_val_acc: val at fit 0.3 -> low plateau only when the bar is above 0.3
    va = 0.3 + 0.7 * sig(1e4)
    assert classify_run(STEPS, train_curve(), va).phase == "grokking"
    assert classify_run(STEPS, train_curve(), va,
                        PhaseThresholds(plateau_val_acc=0.2)).phase == "comprehension"
    # fit_acc: a run stuck at 60% train accuracy fits when the bar is 0.5
    tr, v = c["confusion"]
    assert classify_run(STEPS, tr, v, PhaseThresholds(fit_acc=0.5)).phase == "memorization"
    # gen_acc: val plateau at 0.8
    va = 0.05 + 0.75 * sig(1e4)
    assert classify_run(STEPS, train_curve(), va).phase == "memorization"
    assert classify_run(STEPS, train_curve(), va, PhaseThresholds(gen_acc=0.75)).phase == \
        "grokking"
    # comprehension_factor sets the delayed flag
    va = 0.05 + 0.95 * sig(500)  # ~4x delay, low plateau -> not grokking at factor 10
    r = classify_run(STEPS, train_curve(), va)
    assert r.phase == "comprehension" and r.delayed
    assert not classify_run(STEPS, train_curve(), va,
                            PhaseThresholds(comprehension_factor=10)).delayed
    assert classify_run(STEPS, train_curve(), va, PhaseThresholds(grok_factor=3)).phase == \
        "grokking"
    # shape parameters: a two-step plateau at 0.5 is outside [0.6, 0.9]
    assert not classify_run(STEPS, *c["two_step"], PhaseThresholds(mid_low=0.6)).shape.two_step
    assert not classify_run(STEPS, *c["high_base"],
                            PhaseThresholds(high_base=0.7)).shape.high_base_late_jump
    assert not classify_run(STEPS, *c["slow_rise"],
                            PhaseThresholds(slow_rise_min=0.5)).shape.slow_rise_then_jump


def test_first_step_reaching():
    s = np.array([0, 10, 20, 30, 40, 50])
    v = np.array([0.0, 0.5, 0.995, 0.9, 0.99, 1.0])
    assert first_step_reaching(s, v, 0.99) == 20
    assert first_step_reaching(s, v, 0.99, sustain=True) == 40
    assert first_step_reaching(s, v, 0.99, sustain=True, tolerance=0.1) == 20
    assert math.isnan(first_step_reaching(s, v, 1.5))
    assert math.isnan(first_step_reaching([], [], 0.5))
    # unsorted input and NaNs
    assert first_step_reaching([30, 10, 20], [1.0, np.nan, 0.99], 0.99) == 20
    with pytest.raises(ConfigError):
        first_step_reaching([1, 2], [1.0], 0.5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=40),
       st.floats(1.5, 50))
def test_every_run_gets_exactly_one_phase(pairs, grok_factor):
    tr = np.maximum.accumulate(np.array([p[0] for p in pairs]))
    va = np.array([p[1] for p in pairs])
    steps = np.arange(len(pairs)) * 7
    r = classify_run(steps, tr, va, PhaseThresholds(grok_factor=grok_factor))
    assert r.phase in PHASES
    assert (r.phase == "confusion") == bool(math.isnan(r.fit_step))
    if r.phase in ("grokking", "comprehension"):
        assert not math.isnan(r.gen_step)
    if r.phase == "grokking":
        assert r.delay_ratio >= grok_factor and r.low_plateau


def _metrics_table():
    c = curves()
    rows = []
    spec = [("grokking", 0.3, 0), ("grokking", 0.3, 1), ("memorization", 0.3, 2),
            ("comprehension", 0.7, 0), ("comprehension", 0.7, 1), ("two_step", 0.7, 2)]
    for run, (name, frac, seed) in enumerate(spec):
        tr, va = c[name]
        for s, a, b in zip(STEPS, tr, va):
            rows.append(dict(run=run, step=int(s), seed=seed, split_seed=0, fraction=frac,
                             weight_decay=1.0, lr=1e-3, alpha=2.0, train_acc=a, val_acc=b,
                             train_loss=1 - a + 1e-3, val_loss=1 - b + 1e-3, diverged=0))
    return pd.DataFrame(rows)


def test_classify_table_and_aggregate():
    df = _metrics_table()
    runs = classify_table(df)
    assert list(runs["run"]) == list(range(6))
    assert list(runs["phase"]) == ["grokking", "grokking", "memorization", "comprehension",
                                   "comprehension", "grokking"]
    for col in ("seed", "split_seed", "fraction", "weight_decay", "lr", "alpha", "fit_step",
                "gen_step", "delay", "delay_ratio", "two_step", "high_base_late_jump",
                "slow_rise_then_jump", "final_train_acc", "final_val_acc"):
        assert col in runs
    assert "train_loss" not in runs and "step" not in runs
    assert runs.loc[5, "two_step"] and not runs.loc[0, "two_step"]
    cells = aggregate_cells(runs)
    assert len(cells) == 2 and "seed" not in cells and "alpha" in cells
    a = cells.set_index("fraction")
    assert a.loc[0.3, "n_seeds"] == 3
    assert a.loc[0.3, "frac_grokking"] == pytest.approx(2 / 3)
    assert a.loc[0.3, "frac_memorization"] == pytest.approx(1 / 3)
    assert a.loc[0.3, "majority_phase"] == "grokking"
    assert a.loc[0.3, "n_generalized"] == 2
    assert a.loc[0.7, "majority_phase"] == "comprehension"
    assert a.loc[0.7, "agreement"] == pytest.approx(2 / 3)
    assert a.loc[0.7, "frac_two_step"] == pytest.approx(1 / 3)


def test_aggregate_hand_built_table():
    rt = pd.DataFrame({
        "run": range(7),
        "seed": [0, 1, 2, 3, 0, 1, 0],
        "split_seed": 0,
        "fraction": [0.3, 0.3, 0.3, 0.3, 0.5, 0.5, 0.9],
        "weight_decay": 1.0,
        "phase": ["grokking", "grokking", "grokking", "memorization", "memorization",
                  "grokking", "comprehension"],
        "fit_step": [10, 10, 10, 10, 10, 20, 5],
        "gen_step": [100, 200, 300, np.nan, np.nan, 400, 6],
        "delay": [90, 190, 290, np.nan, np.nan, 380, 1],
        "delay_ratio": [10, 20, 30, np.nan, np.nan, 20, 1.2],
    })
    cells = aggregate_cells(rt).set_index("fraction")
    r = cells.loc[0.3]
    assert r["n_seeds"] == 4
    assert (r["frac_confusion"], r["frac_memorization"], r["frac_grokking"],
            r["frac_comprehension"]) == (0, 0.25, 0.75, 0)
    assert r["majority_phase"] == "grokking" and r["agreement"] == 0.75 and r["n_majority"] == 3
    assert (r["gen_step_median"], r["gen_step_q25"], r["gen_step_q75"]) == (200, 150, 250)
    assert r["delay_median"] == 190
    # a 1-1 tie is broken in PHASES order (memorization before grokking)
    assert cells.loc[0.5, "majority_phase"] == "memorization"
    assert cells.loc[0.5, "agreement"] == 0.5 and cells.loc[0.5, "gen_step_median"] == 400
    assert cells.loc[0.9, "frac_comprehension"] == 1.0
    np.testing.assert_allclose(cells[[f"frac_{p}" for p in PHASES]].sum(axis=1), 1.0)


def test_missing_columns_raise():
    with pytest.raises(ConfigError):
        classify_table(pd.DataFrame({"run": [0], "step": [0]}))

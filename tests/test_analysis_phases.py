import math
import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jgrok.analysis import (PHASES, PhaseThresholds, aggregate_cells, classify_run,
                            classify_table, first_step_reaching, liu_phase, phase_counts)
from jgrok.errors import ConfigError

STEPS = np.concatenate([[0.0], np.unique(np.round(np.logspace(0, 5, 160)))])
W = 0.04  # sigmoid width in decades


def sig(center, width=W, steps=STEPS):
    z = (np.log10(np.maximum(steps, 1.0)) - math.log10(center)) / width
    return 1.0 / (1.0 + np.exp(-z))


def train_curve(center=100.0, top=1.0):
    return 0.01 + (top - 0.01) * sig(center)


# --- the phases and the mixed shapes, each with a known answer ----------------------------
def log_ramp(start, stop, lo, hi, steps=STEPS):
    """lo at `start`, hi at `stop`, linear in log step between them."""
    x = (np.log10(np.maximum(steps, 1.0)) - math.log10(start)) / math.log10(stop / start)
    return lo + (hi - lo) * np.clip(x, 0, 1)


def curves():
    tr = train_curve(100)
    return {
        "confusion": (train_curve(100, top=0.6), 0.02 + 0.1 * sig(1e3)),
        "memorization": (tr, 0.05 + 0.0 * STEPS),
        "grokking": (tr, 0.05 + 0.95 * sig(1e4)),
        "comprehension": (tr, 0.05 + 0.95 * sig(120)),
        # a creep from chance at the fit to 1 by ~12x the fit: half-way at ~3.5x, no plateau
        "creep": (tr, log_ramp(130, 1600, 0.05, 1.0)),
        # commutative op: val sits at the commutation share 0.5 after fitting, then jumps
        "commutation_plateau": (tr, 0.5 * sig(90) + 0.5 * sig(1e4)),
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
    "creep": ("slow_rise", False, False, True),
    "commutation_plateau": ("grokking", False, False, False),
    "two_step": ("grokking", True, False, False),
    "high_base": ("grokking", False, True, False),
    # a rise that stays below half-way does not end the plateau
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


def test_steps_delay_and_plateau():
    c = curves()
    g = classify_run(STEPS, *c["grokking"])
    # train centre 100 -> 0.99 reached ~1.3x later; val centre 1e4 likewise
    assert 100 <= g.fit_step <= 200 and 1e4 <= g.gen_step <= 2e4
    assert g.delay == pytest.approx(g.gen_step - g.fit_step)
    assert g.delay_ratio == pytest.approx(g.gen_step / g.fit_step)
    # half-way (0.525) is passed at the val curve's centre, 1e4
    assert g.plateau and 8e3 <= g.plateau_end_step <= 1.1e4
    comp = classify_run(STEPS, *c["comprehension"])
    assert comp.delay_ratio < 2
    creep = classify_run(STEPS, *c["creep"])
    assert not creep.plateau and creep.plateau_end_step < 5 * creep.fit_step
    assert creep.delay_ratio >= 10  # late, yet not grokking: no plateau
    cp = classify_run(STEPS, *c["commutation_plateau"])
    assert 0.45 <= cp.val_acc_at_fit < 0.55 and cp.plateau
    conf = classify_run(STEPS, *c["confusion"])
    assert math.isnan(conf.fit_step) and math.isnan(conf.gen_step) and math.isnan(conf.delay)
    mem = classify_run(STEPS, *c["memorization"])
    assert not math.isnan(mem.fit_step) and math.isnan(mem.gen_step)
    assert mem.final_val_acc == pytest.approx(0.05) and mem.plateau
    assert math.isnan(mem.plateau_end_step)


def test_thresholds_are_honoured():
    c = curves()
    # delay_factor: a ~100x delay is not grokking when 1000x is required -> slow rise
    assert classify_run(STEPS, *c["grokking"], PhaseThresholds(delay_factor=1000)).phase == \
        "slow_rise"
    # plateau_factor: the creep passes half-way at ~3.5x the fit step
    assert classify_run(STEPS, *c["creep"], PhaseThresholds(plateau_factor=3)).phase == \
        "grokking"
    assert classify_run(STEPS, *c["grokking"], PhaseThresholds(plateau_factor=200)).phase == \
        "slow_rise"
    # fit_acc: a run stuck at 60% train accuracy fits when the bar is 0.5
    tr, v = c["confusion"]
    assert classify_run(STEPS, tr, v, PhaseThresholds(fit_acc=0.5)).phase == "memorization"
    # gen_acc: val plateau at 0.8
    va = 0.05 + 0.75 * sig(1e4)
    assert classify_run(STEPS, train_curve(), va).phase == "memorization"
    assert classify_run(STEPS, train_curve(), va, PhaseThresholds(gen_acc=0.75)).phase == \
        "grokking"
    # comprehension_factor: a plateau then a jump at ~4x the fit is late but short of 10x
    va = 0.05 + 0.95 * sig(500)
    assert classify_run(STEPS, train_curve(), va).phase == "slow_rise"
    assert classify_run(STEPS, train_curve(), va,
                        PhaseThresholds(comprehension_factor=10)).phase == "comprehension"
    assert classify_run(STEPS, train_curve(), va,
                        PhaseThresholds(delay_factor=3, plateau_factor=3)).phase == "grokking"
    # shape parameters: a two-step plateau at 0.5 is outside [0.6, 0.9]
    assert not classify_run(STEPS, *c["two_step"], PhaseThresholds(mid_low=0.6)).shape.two_step
    assert not classify_run(STEPS, *c["high_base"],
                            PhaseThresholds(high_base=0.7)).shape.high_base_late_jump
    assert not classify_run(STEPS, *c["slow_rise"],
                            PhaseThresholds(slow_rise_min=0.5)).shape.slow_rise_then_jump
    with pytest.raises(ConfigError, match="rule"):
        PhaseThresholds(rule="power")
    with pytest.raises(ConfigError):
        PhaseThresholds(comprehension_factor=20)


def test_liu_rule_on_curves():
    liu = PhaseThresholds(rule="liu")
    c = curves()
    # 0.9 steps: train ~125, val ~1.2e4 for grokking; a gap of 1e3 steps is the boundary
    assert classify_run(STEPS, *c["grokking"], liu).phase == "grokking"
    assert classify_run(STEPS, *c["comprehension"], liu).phase == "comprehension"
    assert classify_run(STEPS, *c["memorization"], liu).phase == "memorization"
    assert classify_run(STEPS, *c["confusion"], liu).phase == "confusion"
    # the creep reaches 0.9 at ~1200 steps, 1e3 after the fit: grokking by the absolute gap
    r = classify_run(STEPS, *c["creep"], liu)
    assert r.phase == "grokking" and r.delay >= 1e3
    assert classify_run(STEPS, *c["creep"], PhaseThresholds(rule="liu", liu_gap=5e3)).phase \
        == "comprehension"
    # a run that stops at 95% train accuracy fits under Liu's 0.9 but not under 0.99
    tr = train_curve(100, top=0.95)
    assert classify_run(STEPS, tr, 0.05 + 0.0 * STEPS, liu).phase == "memorization"
    assert classify_run(STEPS, tr, 0.05 + 0.0 * STEPS).phase == "confusion"


GROKKING_SQUARED = os.path.join(os.path.dirname(__file__), "data", "grokking_squared")


def test_liu_rule_reproduces_the_grokking_squared_phase_counts():
    """The 11x11 (learning rate x weight decay) step grids of Liu et al.'s notebook, where
    99999 (= budget - 1) means "never reached". Counts worked out by hand from the two files
    (see tests/data/grokking_squared/README.md), one row of the grid at a time."""
    train = np.loadtxt(os.path.join(GROKKING_SQUARED, "train_steps.txt"))
    test = np.loadtxt(os.path.join(GROKKING_SQUARED, "test_steps.txt"))
    assert train.shape == test.shape == (11, 11)
    never = lambda a: np.where(a >= 99999, np.nan, a)  # noqa: E731
    train, test = never(train), never(test)
    grid = np.array([[liu_phase(a, b, 1e3) for a, b in zip(ra, rb)]
                     for ra, rb in zip(train, test)])
    counts = pd.Series(grid.ravel()).value_counts().to_dict()
    assert counts == {"memorization": 49, "confusion": 39, "comprehension": 17, "grokking": 16}
    # row by row: (comprehension, grokking, memorization, confusion)
    by_row = [(4, 6, 1, 0), (5, 5, 1, 0), (6, 4, 1, 0), (2, 1, 8, 0), (0, 0, 9, 2),
              (0, 0, 7, 4), (0, 0, 6, 5), (0, 0, 5, 6), (0, 0, 4, 7), (0, 0, 4, 7),
              (0, 0, 3, 8)]
    for row, expected in zip(grid, by_row):
        got = tuple(int((row == p).sum()) for p in
                    ("comprehension", "grokking", "memorization", "confusion"))
        assert got == expected
    # two cells read off the files: row 3 col 5 (969 -> 1400) and row 3 col 7 (2239 -> 19977)
    assert grid[3, 5] == "comprehension" and grid[3, 7] == "grokking"


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
       st.floats(2.0, 50), st.floats(1.0, 20), st.sampled_from(["plateau", "liu"]))
def test_every_run_gets_exactly_one_phase(pairs, delay_factor, plateau_factor, rule):
    tr = np.maximum.accumulate(np.array([p[0] for p in pairs]))
    va = np.array([p[1] for p in pairs])
    steps = np.arange(len(pairs)) * 7
    t = PhaseThresholds(rule=rule, delay_factor=delay_factor, plateau_factor=plateau_factor)
    r = classify_run(steps, tr, va, t)
    assert r.phase in PHASES
    assert (r.phase == "confusion") == bool(math.isnan(r.fit_step))
    if r.phase in ("grokking", "slow_rise", "comprehension"):
        assert not math.isnan(r.gen_step)
    if rule == "liu":
        assert r.phase != "slow_rise"
        if r.phase == "grokking":
            assert r.delay >= 1e3
        return
    if r.phase == "grokking":
        assert r.delay_ratio >= delay_factor and r.plateau
        assert math.isnan(r.plateau_end_step) or \
            r.plateau_end_step >= plateau_factor * max(r.fit_step, 1)
    if r.phase == "slow_rise":
        assert r.delay_ratio > 2 and not (r.plateau and r.delay_ratio >= delay_factor)
    if r.phase == "comprehension":
        assert r.delay_ratio <= 2


def _metrics_table():
    c = curves()
    rows = []
    spec = [("grokking", 0.3, 0), ("grokking", 0.3, 1), ("memorization", 0.3, 2),
            ("comprehension", 0.7, 0), ("comprehension", 0.7, 1), ("two_step", 0.7, 2)]
    for run, (name, frac, seed) in enumerate(spec):
        tr, va = c[name]
        for s, a, b in zip(STEPS, tr, va):
            rows.append(dict(run=run, seed=seed, split_seed=0, fraction=frac,
                             weight_decay=1.0, lr=1e-3, alpha=2.0, step=int(s), train_acc=a, val_acc=b,
                             train_loss=1 - a + 1e-3, val_loss=1 - b + 1e-3, diverged=0))
    return pd.DataFrame(rows)


def test_classify_table_and_aggregate():
    df = _metrics_table()
    runs = classify_table(df)
    assert list(runs["run"]) == list(range(6))
    assert list(runs["phase"]) == ["grokking", "grokking", "memorization", "comprehension",
                                   "comprehension", "grokking"]
    assert runs["plateau"].tolist() == [True, True, True, False, False, True]
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
    assert a.loc[0.3, "cell_phase"] == "mixed" and a.loc[0.3, "counts"] == "2G 1M"
    assert a.loc[0.3, "final_val_acc_median"] == pytest.approx(1.0, abs=1e-3)
    assert a.loc[0.3, "n_generalized"] == 2
    assert a.loc[0.7, "majority_phase"] == "comprehension" and a.loc[0.7, "n_grokking"] == 1
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
    assert r["majority_phase"] == "grokking" and r["agreement"] == 0.75 and r["n_grokking"] == 3
    assert r["cell_phase"] == "mixed" and r["counts"] == "3G 1M"
    assert (r["gen_step_median"], r["gen_step_q25"], r["gen_step_q75"]) == (200, 150, 250)
    assert r["delay_median"] == 190
    # a 1-1 tie is not settled in favour of either phase
    assert cells.loc[0.5, "majority_phase"] == "tie" and cells.loc[0.5, "cell_phase"] == "mixed"
    assert cells.loc[0.5, "counts"] == "1M 1G"
    assert cells.loc[0.5, "agreement"] == 0.5 and cells.loc[0.5, "gen_step_median"] == 400
    assert cells.loc[0.9, "frac_comprehension"] == 1.0
    assert cells.loc[0.9, "cell_phase"] == "comprehension" and cells.loc[0.9, "counts"] == "1C"
    np.testing.assert_allclose(cells[[f"frac_{p}" for p in PHASES]].sum(axis=1), 1.0)


def test_missing_columns_raise():
    with pytest.raises(ConfigError):
        classify_table(pd.DataFrame({"run": [0], "step": [0]}))


def test_phase_counts_string():
    assert phase_counts(["grokking", "memorization", "grokking", "slow_rise"]) == "2G 1M 1S"
    assert phase_counts(["comprehension", "confusion"]) == "1X 1C"


def test_one_evaluation_after_the_fit_is_still_comprehension():
    # powers-of-two evaluations: fit at 32, 99% at 64 -> together, not a slow rise
    steps = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128, 256])
    tr = np.array([0.3, 0.4, 0.5, 0.7, 0.9, 0.98, 0.997, 1, 1, 1])
    va = np.array([0.3, 0.4, 0.5, 0.7, 0.9, 0.97, 0.975, 0.992, 0.993, 0.995])
    assert classify_run(steps, tr, va).phase == "comprehension"
    va[7] = 0.985
    assert classify_run(steps, tr, va).phase == "slow_rise"  # 99% at 128 = 4x the fit


# --- generalization must hold (PhaseThresholds.hold_acc) ----------------------------------
def _cross(after):
    """Fits at step 100, validation accuracy crosses 0.99 at step 1e4 (a grokking jump), then
    follows `after` (a function of the steps past the crossing) to the end at 1e5."""
    tr = train_curve(100)
    va = 0.05 + 0.95 * sig(1e4)
    late = STEPS > 2e4
    va = np.where(late, after(STEPS), va)
    return tr, va


def test_a_run_that_crosses_and_collapses_has_not_generalized():
    # the crossing is at ~1.2e4; after 2e4 the accuracy falls to 0.585 and stays there
    tr, va = _cross(lambda s: 0.585 + 0 * s)
    assert first_step_reaching(STEPS, va, 0.99) < 2e4   # it did cross
    r = classify_run(STEPS, tr, va)
    assert r.phase == "memorization" and math.isnan(r.gen_step) and math.isnan(r.delay)
    assert r.final_val_acc == pytest.approx(0.585)
    # the hold level is a named threshold: at 0.5 the same run keeps its crossing
    r = classify_run(STEPS, tr, va, PhaseThresholds(hold_acc=0.5))
    assert r.phase == "grokking" and 1e4 <= r.gen_step <= 2e4
    # just below and just above the default 0.9
    assert classify_run(STEPS, tr, _cross(lambda s: 0.899 + 0 * s)[1]).phase == "memorization"
    assert classify_run(STEPS, tr, _cross(lambda s: 0.901 + 0 * s)[1]).phase == "grokking"


def test_a_run_that_crosses_and_holds_keeps_its_first_crossing():
    tr, va = _cross(lambda s: 1.0 + 0 * s)
    held = classify_run(STEPS, tr, va)
    assert held.phase == "grokking" and 1e4 <= held.gen_step <= 2e4
    # a loss spike: one evaluation at 0.06 between the crossing and the end, then back at 1.0
    dip = va.copy()
    dip[np.flatnonzero(STEPS > 3e4)[0]] = 0.06
    spiked = classify_run(STEPS, tr, dip)
    assert spiked.phase == "grokking" and spiked.gen_step == held.gen_step
    # comprehension that degrades to 0.8 at the end is not comprehension
    va = 0.05 + 0.95 * sig(120)
    assert classify_run(STEPS, train_curve(), va).phase == "comprehension"
    va[-1] = 0.8
    r = classify_run(STEPS, train_curve(), va)
    assert r.phase == "memorization" and math.isnan(r.gen_step)


def test_hold_level_and_the_liu_rule():
    assert PhaseThresholds().hold_level == 0.9
    assert PhaseThresholds(gen_acc=0.75).hold_level == 0.75   # never above gen_acc
    with pytest.raises(ConfigError, match="hold_acc"):
        PhaseThresholds(hold_acc=1.5)
    # Liu et al.'s rule reproduces the notebook: no hold check
    tr, va = _cross(lambda s: 0.585 + 0 * s)
    assert classify_run(STEPS, tr, va, PhaseThresholds(rule="liu")).phase == "grokking"
    assert "final val acc >= 0.9" in PhaseThresholds().describe()


def test_the_committed_collapse_add_transformer_small_run_11():
    # crosses 0.99 at step 2365, ends at 0.585 (train 0.733): once labelled comprehension
    path = os.path.join(os.path.dirname(__file__), "..", "results", "add_transformer_small",
                        "metrics.csv")
    g = pd.read_csv(path).query("run == 11").sort_values("step")
    assert first_step_reaching(g.step, g.val_acc, 0.99) == 2365
    r = classify_run(g.step, g.train_acc, g.val_acc)
    assert r.phase == "memorization" and r.final_val_acc == pytest.approx(0.5849, abs=1e-4)

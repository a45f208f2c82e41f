"""Our runs beside the study's tables (jgrok.analysis.reference)."""

import os

import numpy as np
import pandas as pd
import pytest

from jgrok.analysis import reference
from jgrok.errors import ConfigError

STUDY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                     "shared", "reference", "study_tables.csv")


def _metrics():
    rows = []
    for task, variant in (("mnist1000", "baseline"), ("mnist1000", "cross_entropy"),
                          ("mnist1000-0v1", "baseline"), ("wine-red", "baseline"),
                          ("wine-red", "sigmoid_hidden")):
        for seed in (0, 1, 2):
            for step in (0, 10, 20, 30):
                rows.append(dict(task=task, variant=variant, seed=seed, step=step,
                                 train_acc=0.5 + seed / 10, val_acc=step / 100 + seed / 100,
                                 param_norm=100.0 - step - seed))
    return pd.DataFrame(rows)


def _reference():
    rows = [("mnist_baseline_mse_linear", s, 1.0, s / 50, 200.0 - s) for s in (20, 30, 40)]
    rows += [("mnist_cross_entropy", 20, 1.0, 0.9, 150.0)]
    rows += [("wine_quality_baseline", 30, 1.0, 0.25, 99.0)]
    return pd.DataFrame(rows, columns=reference.STUDY_COLUMNS)


def test_names_follow_the_study():
    assert reference.study_table_name("mnist1000", "baseline") == "mnist_baseline_mse_linear"
    assert reference.study_table_name("mnist1000", "softmax_output") == "mnist_softmax_output"
    assert reference.study_table_name("wine-white", "baseline") == "wine_quality_baseline"
    assert reference.study_table_name("wine-red", "cross_entropy") is None
    assert reference.study_table_name("mnist1000-0v1", "baseline") is None


def test_seed_means_sit_beside_the_study_at_common_steps_only():
    t = reference.compare_with_study(_metrics(), _reference())
    got = {(r.task, r.variant, r.step) for r in t.itertuples()}
    assert got == {("mnist1000", "baseline", 20), ("mnist1000", "baseline", 30),
                   ("mnist1000", "cross_entropy", 20), ("wine-red", "baseline", 30)}
    r = t[(t.variant == "baseline") & (t.step == 30) & (t.task == "mnist1000")].iloc[0]
    assert r.seeds == 3
    np.testing.assert_allclose([r.train_acc, r.val_acc, r.val_acc_min, r.val_acc_max,
                                r.param_norm], [0.6, 0.31, 0.30, 0.32, 69.0])
    assert (r.study_val_acc, r.study_weight_norm) == (0.6, 170.0)
    md = reference.comparison_markdown(t)
    assert "### mnist1000, baseline" in md and "| 30 | 0.600 | 1.000 | 0.310 | 0.300-0.320" in md


def test_bad_inputs_are_one_line_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="lacks the columns"):
        reference.compare_with_study(_metrics().drop(columns="param_norm"), _reference())
    bad = tmp_path / "t.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="missing columns"):
        reference.read_study_tables(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        reference.read_study_tables(tmp_path / "none.csv")


@pytest.mark.skipif(not os.path.exists(STUDY), reason="shared/reference not beside the project")
def test_the_shared_study_tables_name_every_table_we_map_to():
    names = set(reference.read_study_tables(STUDY)["variant"])
    ours = {reference.study_table_name("mnist1000", v) for v in
            ("baseline", "sigmoid_hidden", "sigmoid_output", "softmax_output", "cross_entropy")}
    assert ours | {"wine_quality_baseline"} == names


@pytest.mark.slow
def test_the_entry_point_refuses_a_missing_run_in_one_line(tmp_path):
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ref = tmp_path / "ref.csv"
    _reference().to_csv(ref, index=False)
    r = subprocess.run([sys.executable, os.path.join(root, "experiments", "compare_study.py"),
                        f"--runs={tmp_path / 'none'}", f"--study_tables={ref}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "metrics" in r.stderr
    run = tmp_path / "run"
    run.mkdir()
    _metrics().assign(run=0).to_csv(run / "metrics.csv", index=False)
    r = subprocess.run([sys.executable, os.path.join(root, "experiments", "compare_study.py"),
                        f"--runs={run}", f"--study_tables={ref}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(pd.read_csv(run / "study_comparison.csv")) == 4

import math
import os

import numpy as np
import pandas as pd
import pytest

from jgrok import analysis, figures
from jgrok.analysis import PhaseThresholds, aggregate_cells, classify_table, spikes_table

STEPS = np.concatenate([[0.0], np.unique(np.round(np.logspace(0, 4, 50)))])


def sig(center, width=0.05):
    z = (np.log10(np.maximum(STEPS, 1.0)) - math.log10(center)) / width
    return 1.0 / (1.0 + np.exp(-z))


def synthetic_table(spike=True):
    rows = []
    run = 0
    for wd in (0.1, 1.0):
        for frac in (0.3, 0.5, 0.8):
            for seed in (0, 1):
                tr = 0.01 + 0.99 * sig(50 * (1 + seed * 0.2))
                gen_center = {0.3: 5e3, 0.5: 1e3, 0.8: 60}[frac] * (1 + 0.3 * seed)
                va = 0.02 + 0.98 * sig(gen_center) if not (frac == 0.3 and wd == 0.1) else \
                    0.02 + 0.0 * STEPS
                tl = 3.0 * (1 - tr) + 1e-3
                if spike and run == 4:
                    tl = tl.copy()
                    tl[35:37] *= 200.0
                vl = 3.0 * (1 - va) + 1e-3
                norm = 10 + np.log1p(STEPS)
                for i, s in enumerate(STEPS):
                    rows.append(dict(run=run, seed=seed, split_seed=0,
                                     fraction=frac, weight_decay=wd, lr=1e-3,
                                     step=int(s), train_loss=tl[i], train_acc=tr[i], val_loss=vl[i],
                                     val_acc=va[i], param_norm=norm[i] * 2,
                                     last_layer_norm=norm[i], diverged=0, wall_time=0.1 * i))
                run += 1
    return pd.DataFrame(rows)


def write_all_figures(df, out_dir, thresholds=PhaseThresholds()):
    """A run directory's tables, then its figures drawn from them, as plot.py writes them."""
    rep = analysis.report(df, out_dir, thresholds)
    return [*rep.paths, *figures.draw_report(rep, out_dir)]


def _check_files(paths):
    for p in paths:
        assert os.path.isfile(p) and os.path.getsize(p) > 0, p
        with open(p, "rb") as f:
            head = f.read(8)
        if p.endswith(".png"):
            assert head.startswith(b"\x89PNG")
        elif p.endswith(".pdf"):
            assert head.startswith(b"%PDF")


def _no_temp_files(folder):
    for root, _, files in os.walk(folder):
        assert not [f for f in files if f.startswith(".tmp-")]


def test_write_all_figures(tmp_path):
    df = synthetic_table()
    paths = write_all_figures(df, tmp_path)
    _check_files(paths)
    names = {os.path.relpath(p, tmp_path) for p in paths}
    for stem in ("phase_diagram", "steps_to_generalize", "accuracy_curves", "loss_grid",
                 "loss_spikes"):
        assert os.path.join("figures", stem + ".png") in names
        assert os.path.join("figures", stem + ".pdf") in names
    for csv in ("phases.csv", "cells.csv", "spikes.csv"):
        assert csv in names
    phases = pd.read_csv(tmp_path / "phases.csv")
    assert len(phases) == df["run"].nunique()
    assert set(phases["phase"]) <= {"confusion", "memorization", "grokking", "comprehension"}
    cells = pd.read_csv(tmp_path / "cells.csv")
    assert len(cells) == 6 and (cells["n_seeds"] == 2).all()
    spikes = pd.read_csv(tmp_path / "spikes.csv")
    assert list(spikes["run"]) == [4]
    assert "phase_rule.json" in names
    _no_temp_files(tmp_path)


def test_run_directory_records_its_rule_and_redraws_the_same_bytes(tmp_path):
    from jgrok.analysis.phases import PhaseThresholds, read_phase_rule

    df = synthetic_table()
    assert read_phase_rule(tmp_path) == PhaseThresholds()  # no file: the defaults
    rule = PhaseThresholds(gen_acc=0.98, hold_acc=0.8)
    write_all_figures(df, tmp_path, thresholds=rule)
    assert read_phase_rule(tmp_path) == rule
    pdf = tmp_path / "figures" / "phase_diagram.pdf"
    first = pdf.read_bytes()
    write_all_figures(df, tmp_path, thresholds=rule)
    assert pdf.read_bytes() == first and b"CreationDate" not in first  # no date in the PDF


def test_write_all_figures_partial_and_tiny_tables(tmp_path):
    df = synthetic_table()
    partial = df[df["step"] <= 3].copy()  # a run cut short: few eval steps, nothing fits
    diverged = (partial["run"] == 0) & (partial["step"] > 1)  # one run diverged: NaN / inf
    partial.loc[diverged, ["train_loss", "val_loss", "train_acc", "val_acc"]] = np.nan
    partial.loc[diverged & (partial["step"] == 3), "train_loss"] = np.inf
    partial.loc[diverged, "diverged"] = 1
    _check_files(write_all_figures(partial, tmp_path / "partial"))
    init_only = df[df["step"] == 0]
    _check_files(write_all_figures(init_only, tmp_path / "init"))
    # one run, no norm columns, an extra coordinate column, read from a CSV path
    df2 = df[df["run"] == 4].drop(columns=["last_layer_norm", "param_norm"]).assign(variant="b")
    df2.to_csv(tmp_path / "metrics.csv", index=False)
    _check_files(write_all_figures(str(tmp_path / "metrics.csv"), tmp_path / "csv"))


def test_individual_plots(tmp_path):
    df = synthetic_table()
    _check_files(figures.plot_accuracy_curves(df, tmp_path / "acc_run.png", run=3))
    assert os.path.isfile(tmp_path / "acc_run.pdf")
    _check_files(figures.plot_loss_curves(df, tmp_path / "loss4", run=4,
                                           spikes=spikes_table(df)))
    _check_files(figures.plot_loss_curves(df, tmp_path / "loss0", run=0))
    # many cells: small multiples coloured by fraction
    many = pd.concat([df.assign(fraction=df["fraction"] + k / 100, run=df["run"] + 100 * k)
                      for k in range(4)])
    _check_files(figures.plot_accuracy_curves(many, tmp_path / "acc_many"))
    cells = aggregate_cells(classify_table(df))
    _check_files(figures.plot_phase_diagram(cells, tmp_path / "pd"))
    strip = cells[cells["weight_decay"] == 1.0]
    _check_files(figures.plot_phase_diagram(strip, tmp_path / "pd_strip"))
    _check_files(figures.plot_steps_to_generalize(cells, tmp_path / "steps"))
    nogen = cells.assign(gen_step_median=np.nan, gen_step_q25=np.nan, gen_step_q75=np.nan)
    _check_files(figures.plot_steps_to_generalize(nogen, tmp_path / "steps_none"))
    _no_temp_files(tmp_path)


def test_unknown_run_raises(tmp_path):
    from jgrok.errors import ConfigError

    with pytest.raises(ConfigError):
        figures.plot_loss_curves(synthetic_table(), tmp_path / "x", run=999)

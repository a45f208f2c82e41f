"""The results atlas (`jgrok.analysis.atlas`): generated README blocks with known answers on a
synthetic results folder, and the committed results: every README block, `phases.csv` and
`cells.csv` equals what the code writes today, with the recounted numbers of issue 35."""

import io
import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from jgrok.analysis import atlas
from jgrok.analysis.phases import (PhaseThresholds, aggregate_cells, classify_table,
                                   read_phase_rule, write_phase_rule)
from jgrok.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "results")
STEPS = np.array([0, 10, 20, 40, 80, 160, 320, 640, 1280, 2560])


# --- a synthetic results folder with known answers ----------------------------------------
def _curve(kind):
    """(train_acc, val_acc) at STEPS: fit at step 40 in every run."""
    tr = np.array([0.1, 0.5, 0.9, 1.0, 1, 1, 1, 1, 1, 1])
    va = {"grok": [0.0, 0.0, 0.0, 0.01, 0.01, 0.02, 0.03, 0.6, 1.0, 1.0],   # 99% at 1280 = 32x
          "comp": [0.0, 0.3, 0.8, 0.995, 1, 1, 1, 1, 1, 1],                 # 99% at the fit
          "collapse": [0.0, 0.3, 0.8, 0.995, 1, 1, 0.9, 0.7, 0.6, 0.585],   # crosses, ends 0.585
          "mem": [0.0, 0.0, 0.0, 0.01, 0.01, 0.02, 0.02, 0.02, 0.02, 0.02]}[kind]
    return tr, np.array(va, float)


def _results(tmp_path):
    rows = []
    spec = [(0.5, 0, "grok"), (0.5, 1, "grok"), (0.9, 0, "comp"), (0.9, 1, "collapse"),
            (0.3, 0, "mem"), (0.3, 1, "mem")]
    for run, (frac, seed, kind) in enumerate(spec):
        tr, va = _curve(kind)
        for s, a, b in zip(STEPS, tr, va):
            rows.append(dict(run=run, seed=seed, split_seed=seed, fraction=frac,
                             weight_decay=1.0, lr=1e-3, init_scale=1.0, step=int(s),
                             train_loss=1.0 - a + 1e-3, train_acc=a, val_loss=1.0 - b + 1e-3,
                             val_acc=b, param_norm=10.0 - s / 1000, diverged=0))
    d = tmp_path / "results" / "diag"
    d.mkdir(parents=True)
    df = pd.DataFrame(rows)
    df.to_csv(d / "metrics.csv", index=False)
    classify_table(df).to_csv(d / "phases.csv", index=False)
    cfg = dict(task=dict(op="add", p=7), model=dict(kind="mlp", mlp_input="embed",
                                                     mlp_activation="relu", mlp_depth=1,
                                                     mlp_width=8), train=dict(steps=2560))
    (d / "config.json").write_text(json.dumps(dict(config=cfg)))
    (tmp_path / "results" / "notes").mkdir()  # a folder without tables is no diagram
    return tmp_path / "results"


def test_find_and_label_a_diagram(tmp_path):
    root = _results(tmp_path)
    assert atlas.find_diagrams(root) == ["diag"]
    d = atlas.load_diagram(root, "diag")
    assert dict(zip(d.runs["run"], d.runs["phase"])) == {
        0: "grokking", 1: "grokking", 2: "comprehension", 3: "memorization",
        4: "memorization", 5: "memorization"}
    assert list(d.cells["fraction"]) == [0.3, 0.5, 0.9]
    assert atlas.setting_words(d.setting) == \
        "add mod 7 · MLP (embed, relu, 1×8) · α 1 · fractions 0.3, 0.5, 0.9 · 2560 steps"


def test_atlas_row_known_answer(tmp_path):
    root = _results(tmp_path)
    table = atlas.render_atlas(root)
    row = [line for line in table.splitlines() if "`diag/`" in line][0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "[`diag/`](diag/)"
    assert cells[2] == "6 (3 cells × 2)"
    assert cells[3] == "0.3 2M · 0.5 2G · 0.9 1M 1C"
    assert cells[4] == "0.5 (2/2)"


def test_cells_runs_and_grid_known_answers(tmp_path):
    root = str(_results(tmp_path))
    cells = atlas.render_block("cells diag", root)
    row = [r for r in cells.splitlines() if r.startswith("| 0.5 ")][0]
    # fit at 40, 99% at 1280 = 32x the fit, half-way (0.5) at 640 = 16x
    assert row.rstrip(" |").split(" | ")[3:8] == ["40", "1280", "32", "16", "1.000"]
    row9 = [r for r in cells.splitlines() if r.startswith("| 0.9 ")][0]
    assert "1M 1C" in row9 and "0.792 (0.585–1.000)" in row9
    runs = atlas.render_block("runs diag fraction=0.9", root)
    assert len([r for r in runs.splitlines() if r.startswith("| 2 ") or r.startswith("| 3 ")]) \
        == 2 and "| 3 | 1 | memorization | 40 | – |" in runs
    grid = atlas.render_block("grid diag", root)
    assert "| all | 2M (0.020) | 2G (1.000) | 1M 1C (0.792) |" in grid
    # a threshold given in the block relabels: hold_acc 0.5 keeps run 3's crossing
    relabelled = atlas.render_block("runs diag fraction=0.9 hold_acc=0.5", root)
    assert "| 3 | 1 | comprehension |" in relabelled and "hold_acc=0.5" in relabelled


def test_update_text_rewrites_only_the_blocks(tmp_path):
    root = str(_results(tmp_path))
    text = ("# Title\n\nprose 1\n\n<!-- generated:grid diag -->\nstale\n<!-- generated:end -->\n"
            "\nprose 2 `<!-- generated:… -->` in backticks\n")
    new = atlas.update_text(text, root)
    assert new.startswith("# Title\n\nprose 1\n\n<!-- generated:grid diag -->\n|  | 0.3 |")
    assert new.endswith("<!-- generated:end -->\n\nprose 2 `<!-- generated:… -->` in backticks\n")
    assert "stale" not in new
    assert atlas.update_text(new, root) == new  # idempotent
    with pytest.raises(ConfigError, match="close"):
        atlas.update_text("<!-- generated:grid diag -->\nno end\n", root)
    with pytest.raises(ConfigError, match="kind"):
        atlas.render_block("table diag", root)
    with pytest.raises(ConfigError, match="no run matches"):
        atlas.render_block("cells diag fraction=0.7", root)


def test_update_file_writes_and_reports(tmp_path):
    root = _results(tmp_path)
    md = root / "README.md"
    md.write_text("<!-- generated:atlas -->\n<!-- generated:end -->\n")
    assert atlas.update_file(md, root, write=False)
    assert md.read_text() == "<!-- generated:atlas -->\n<!-- generated:end -->\n"
    assert atlas.update_file(md, root)
    assert "[`diag/`](diag/)" in md.read_text()
    assert not atlas.update_file(md, root)
    # from a file one folder up, the links point into results/
    top = tmp_path / "TOP.md"
    top.write_text("<!-- generated:atlas -->\n<!-- generated:end -->\n")
    atlas.update_file(top, root)
    assert "[`diag/`](results/diag/)" in top.read_text()


def test_phase_rule_of_a_folder_is_used(tmp_path):
    root = _results(tmp_path)
    write_phase_rule(PhaseThresholds(hold_acc=0.5), root / "diag")
    atlas.clear_cache()
    d = atlas.load_diagram(root, "diag")
    assert d.runs.set_index("run").loc[3, "phase"] == "comprehension"


# --- the committed results ------------------------------------------------------------------
def _csv_text(df):
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return buf.getvalue()


def _run_dirs():
    out = []
    for folder in atlas.find_diagrams(RESULTS):
        path = os.path.join(RESULTS, folder)
        if os.path.isfile(os.path.join(path, "op_cells.csv")):
            out += [os.path.join(path, s) for s in sorted(os.listdir(path))
                    if os.path.isfile(os.path.join(path, s, "phases.csv"))]
        else:
            out.append(path)
    return out


@pytest.mark.parametrize("path", _run_dirs(), ids=lambda p: os.path.relpath(p, RESULTS))
def test_committed_labels_follow_todays_rule(path):
    ph = pd.read_csv(os.path.join(path, "phases.csv"))
    if "phase" not in ph:
        pytest.skip("phases.csv of another kind (progress_measures' phase boundaries)")
    metrics = pd.read_csv(os.path.join(path, "metrics.csv"))
    runs = classify_table(metrics, read_phase_rule(path))
    if os.path.isfile(os.path.join(path, "cells.csv")):  # written by analysis.report
        with open(os.path.join(path, "phases.csv")) as f:
            assert f.read() == _csv_text(runs), "phases.csv is stale: re-run plot.py --run"
        with open(os.path.join(path, "cells.csv")) as f:
            assert f.read() == _csv_text(aggregate_cells(runs.drop(columns=["run"])))
    else:  # the MNIST controls: labels keyed by their coordinates
        keys = [c for c in ("task", "variant", "init_scale", "seed") if c in ph]
        got = runs.set_index(keys)["phase"]
        assert got.loc[[tuple(k) for k in ph[keys].to_numpy()]].tolist() == ph["phase"].tolist()


@pytest.mark.parametrize("path", atlas.generated_files(ROOT),
                         ids=lambda p: os.path.relpath(p, ROOT))
def test_committed_readmes_are_what_the_generator_writes(path):
    atlas.clear_cache()
    with open(path) as f:
        text = f.read()
    assert atlas.update_file(path, RESULTS, write=False) is False, \
        f"{os.path.relpath(path, ROOT)} is out of date: run python experiments/atlas.py"
    assert "<!-- generated:" in text


def test_results_readme_opens_with_the_atlas():
    with open(os.path.join(RESULTS, "README.md")) as f:
        lines = f.read().splitlines()
    first = [line for line in lines if line.strip() and not line.startswith("# ")][0]
    assert first == "<!-- generated:atlas -->"
    rows = {line.split("|")[1].strip() for line in lines if line.startswith("| [`")}
    assert rows >= {f"[`{d}/`]({d}/)" for d in atlas.find_diagrams(RESULTS)}


def _block(spec):
    atlas.clear_cache()
    return atlas.render_block(spec, RESULTS)


def test_recount_known_answers():
    """The numbers of issue 35's recount, from the committed CSVs."""
    sp = _block("spikes x2_plus_y2_cpu")
    assert sp.startswith("28 training-loss spikes in 28 of 56 runs")
    assert "| 55 | 10 | 0.9 | grokking | 1811 | 1811 | 1.96 | 1.000 → 0.710 |" in sp
    a1 = _block("runs x2_plus_y2_cpu init_scale=1 fraction=0.9")
    assert "| 50 | 2 | slow rise | 33 | 1226 | 37.2 |" in a1
    cells = _block("cells x2_plus_y2_cpu init_scale=1")
    assert "| 0.9 | 4 | 2S 2C | 33 | 69 (41–1226) | 2.09 (1.24–37.2) |" in cells
    assert "| 0.7 | 4 | 2M 2S |" in cells
    grid = _block("grid op_survey_cpu")
    row07 = {r.split("|")[1].strip(): r.split("|")[4].strip() for r in grid.splitlines()
             if r.startswith("| ") and not r.startswith("| op")}
    assert [row07[o].split(" (")[0] for o in ("add", "sub", "mul", "div")] == \
        ["2G 1M", "3G", "3G", "2G 1M"]
    tf = _block("runs add_transformer_small fraction=0.7,0.8")
    assert "| 9 | 0.7 | 1 | slow rise | 1286 | 2754 | 2.14 | 1.36 |" in tf
    assert "| 10 | 0.8 | 0 | slow rise | 948 | 2754 | 2.91 | 1.58 |" in tf
    assert "| 11 | 0.8 | 1 | memorization | 1286 | – | – | 1.36 | 0.733 | 0.585 |" in tf
    odd = _block("cells op_survey_cpu op=div_odd_sub_even,group:frobenius_21")
    medians = [float(r.split("|")[9].split()[0]) for r in odd.splitlines()
               if r.startswith("| div_odd")]
    assert (min(medians), max(medians)) == (0.006, 0.037)
    frob = "| group:frobenius_21 | 0.9 | 3 | 3M | 25 (23–25) | – | – | – | 0.000 (0.000–0.023) |"
    assert frob in odd


def test_slingshot_run_ids_are_unique_per_table():
    d = os.path.join(RESULTS, "slingshot")
    ids = None
    for name in ("metrics", "steps", "spikes", "summary"):
        t = pd.read_csv(os.path.join(d, f"{name}.csv"))
        pairs = t[["run", "variant", "seed"]].drop_duplicates()
        assert pairs["run"].is_unique, f"{name}.csv: a run id names two variants or seeds"
        mapping = {(v, s): r for r, v, s in pairs.to_numpy()}
        if ids is None:
            ids = mapping
            assert sorted(ids.values()) == list(range(6))
        else:
            assert all(ids[k] == r for k, r in mapping.items()), name


def test_every_diagram_has_a_setting_and_no_nan():
    atlas.clear_cache()
    table = atlas.render_atlas(RESULTS)
    assert "nan" not in table.lower().replace("nanda", "")
    for folder in atlas.find_diagrams(RESULTS):
        d = atlas.load_diagram(RESULTS, folder)
        assert d.setting["steps"] > 0 and not math.isnan(len(d.runs))


def test_nanda_block_puts_the_run_beside_the_paper(tmp_path):
    folder = tmp_path / "nanda"
    folder.mkdir()
    rows = [dict(run=0, seed=0, step=s, train_acc=a, val_acc=v, full_train_loss=tl,
                 full_test_loss=vl, key_freqs="1 2", final_key_freqs="14 35 41")
            for s, a, v, tl, vl in ((0, 0.1, 0.0, 4.7, 4.7), (100, 1.0, 0.3, 1e-3, 9.0),
                                    (200, 1.0, 1.0, 1e-7, 2e-7))]
    pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)
    pd.DataFrame([dict(run=0, seed=0, commutation_share=0.3, memorized=100.0,
                       cleanup_start=200.0, grokked=200.0,
                       test_loss_below_chance=200.0)]).to_csv(folder / "phases.csv",
                                                              index=False)
    text = "x\n<!-- generated:nanda nanda -->\nold\n<!-- generated:end -->\n"
    out = atlas.update_text(text, tmp_path).splitlines()
    assert out[4].startswith("| Nanda et al. | ~1,400 | ~9,400 |")
    assert out[5] == ("| jgrok seed 0 | 100 | 200 | 200 | 200 | 14 35 41 (3) | 1.00e-07 | "
                      "2.00e-07 |")
    assert out[-1] == "<!-- generated:end -->"

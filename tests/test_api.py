"""The public Python API (`jgrok.api`, exported from `jgrok`): configs from presets, committed
run directories opened again, and the README's Python API block, run as written."""

import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest

import jgrok

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_python_block() -> str:
    """The one ```python block under README.md's "Python API" heading."""
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the Python API section holds exactly one python block"
    return blocks[0]


def test_every_exported_name_is_documented_and_annotated():
    import inspect

    assert sorted(set(jgrok.__all__)) == sorted(jgrok.__all__)
    for name in jgrok.__all__:
        obj = getattr(jgrok, name)
        if name == "__version__":
            continue
        assert inspect.getdoc(obj), name
        if inspect.isfunction(obj):
            sig = inspect.signature(obj)
            assert sig.return_annotation is not inspect.Signature.empty, name
            assert all(p.annotation is not inspect.Parameter.empty
                       for p in sig.parameters.values()), name


def test_make_config_overrides_fields_by_their_flag_names():
    cfg = jgrok.make_config("cpu_grok", p=11, steps=50, fractions=[0.3, 0.6], seeds=3,
                            model="transformer", optimizer="adam", keep_checkpoint_every=10)
    assert (cfg.task.p, cfg.train.steps, cfg.sweep.fractions) == (11, 50, (0.3, 0.6))
    assert cfg.sweep.seeds == (0, 1, 2)
    assert (cfg.model.kind, cfg.optim.name, cfg.train.keep_checkpoint_every) == (
        "transformer", "adam", 10)
    # the rest is the preset's
    base = jgrok.make_config("cpu_grok")
    assert cfg.optim.b2 == base.optim.b2 and cfg.sweep.init_scales == base.sweep.init_scales
    assert jgrok.make_config("cpu_grok", seeds=[4, 7]).sweep.seeds == (4, 7)
    assert "cpu_grok" in jgrok.preset_names() and "power" in jgrok.preset_names()


@pytest.mark.parametrize("kwargs, message", [
    (dict(stepz=10), "unknown config field(s) stepz"),
    (dict(kind="mlp"), "unknown config field(s) kind"),  # the model's kind is `model=`
    (dict(fractions=[1.5]), "training fraction 1.5 is outside (0, 1)"),
])
def test_make_config_refuses_bad_input_in_one_line(kwargs, message):
    with pytest.raises(jgrok.ConfigError) as e:
        jgrok.make_config("cpu_grok", **kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(jgrok.ConfigError, match="unknown preset 'nope'"):
        jgrok.make_config("nope")


def test_load_opens_a_committed_run_directory_and_labels_it_as_committed():
    run_dir = os.path.join(ROOT, "results", "x2_plus_y2_cpu")
    result = jgrok.load(run_dir)
    assert result.config.task.p == 47 and len(result.grid) == 56
    assert result.metrics["run"].nunique() == 56
    phases = pd.read_csv(os.path.join(run_dir, "phases.csv"))
    assert result.phases()["phase"].tolist() == phases["phase"].tolist()
    cells = pd.read_csv(os.path.join(run_dir, "cells.csv"))
    assert result.cells()["counts"].tolist() == cells["counts"].tolist()
    assert result.checkpoint_steps() == []  # committed results carry no checkpoints


def test_load_of_a_partial_and_a_variants_directory(tmp_path):
    cfg = jgrok.make_config("cpu_grok", p=11, steps=20)
    run_dir = tmp_path / "partial"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(dict(config=cfg.to_dict(),
                                                         grid=cfg.grid())))
    partial = jgrok.load(run_dir)  # started, no table written yet
    assert partial.config == cfg and partial.metrics.empty and partial.checkpoint_steps() == []
    (tmp_path / "variants" / "a").mkdir(parents=True)
    (tmp_path / "variants" / "a" / "config.json").write_text("{}")
    with pytest.raises(jgrok.ConfigError, match="its variants are run directories: a"):
        jgrok.load(tmp_path / "variants")


def test_an_in_memory_sweep_has_its_final_parameters_only(tmp_path):
    cfg = jgrok.make_config("cpu_grok", p=7, steps=5, fractions=[0.6], init_scales=[1.0],
                            seeds=2, log_eval=None, eval_every=5)
    result = jgrok.run(cfg)
    assert result.directory is None and sorted(result.metrics["step"].unique()) == [0, 5]
    p1 = result.params(seed=1)
    assert p1.step == 5 and p1.coords["seed"] == 1
    assert sorted(p1.params) == ["embed", "hidden_0", "unembed"]
    with pytest.raises(jgrok.ConfigError, match="only its final step 5"):
        result.params(step=3, seed=1)
    with pytest.raises(jgrok.ConfigError, match="pass out_dir"):
        result.draw_figures()
    paths = result.draw_figures(tmp_path / "figs")
    assert os.path.join(tmp_path, "figs", "figures", "phase_diagram.png") in map(str, paths)


@pytest.mark.slow
def test_the_readme_python_block_runs_as_written(tmp_path):
    script = tmp_path / "readme_block.py"
    script.write_text(readme_python_block())
    env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = tmp_path / "runs" / "api_demo"
    assert (run_dir / "figures" / "phase_diagram.png").exists()
    # the history the block asks for: the last checkpoint and one per 200 steps
    assert "[100, 200, 400]" in r.stdout
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["100", "200", "400"]


def test_the_committed_api_reference_is_what_the_generator_writes():
    from jgrok import docs

    with open(os.path.join(ROOT, "docs", "api.md")) as f:
        committed = f.read()
    assert committed == docs.page(), (
        "docs/api.md is out of date: python -m jgrok.docs > docs/api.md")
    for name in jgrok.__all__[1:]:
        assert f"`class {name}`" in committed or f"## `{name}(" in committed, name


def _notebook_script(path: str) -> str:
    """The code cells of a notebook as one script (each cell parses on its own)."""
    nb = json.load(open(path))
    assert nb["nbformat"] == 4
    cells = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
            body = "".join(cell["source"])
            compile(body, "<cell>", "exec")
            cells.append(body)
    return "\n\n".join(cells) + "\n"


@pytest.mark.slow
def test_the_analysis_notebook_opens_a_committed_run_and_draws_its_figures(tmp_path):
    script = tmp_path / "analysis.py"
    script.write_text(_notebook_script(os.path.join(ROOT, "experiments", "analysis.ipynb")))
    out = tmp_path / "out"
    env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg", JGROK_ANALYSIS_OUT=str(out))
    r = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    # the committed sweep's counts (results/x2_plus_y2_cpu/phases.csv)
    committed = pd.read_csv(os.path.join(ROOT, "results", "x2_plus_y2_cpu", "phases.csv"))
    assert f"grokking {int((committed['phase'] == 'grokking').sum())}" in " ".join(
        r.stdout.split())
    assert "5 figures in" in r.stdout
    assert (out / "figures" / "phase_diagram.png").exists()
    assert pd.read_csv(out / "phases.csv")["phase"].tolist() == committed["phase"].tolist()

"""Presets: one registry, --preset=NAME on the entry points, given flags override it."""

import dataclasses
import os
import sys

import pytest

from jgrok import presets
from jgrok.config import ExperimentConfig, SweepConfig
from jgrok.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def parse_flags():
    """Parse a command line with experiments/common_flags.py's flags; reset afterwards."""
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    import common_flags

    def parse(*args):
        common_flags.FLAGS.unparse_flags()
        common_flags.FLAGS(["prog", *args])
        return common_flags.config_from_flags()

    yield parse
    common_flags.FLAGS.unparse_flags()
    sys.path.remove(os.path.join(ROOT, "experiments"))


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_every_preset_is_a_valid_config(name):
    cfg = presets.get(name)
    assert isinstance(cfg, ExperimentConfig)
    cfg.validate()


def test_unknown_preset_is_one_config_error():
    with pytest.raises(ConfigError, match="unknown preset 'nope'; known: power"):
        presets.get("nope")


def test_no_flags_gives_the_paper_config_as_before(parse_flags):
    cfg = parse_flags()
    assert cfg == presets.power_preset()
    # the values the flag defaults gave before presets existed
    assert cfg == ExperimentConfig(sweep=SweepConfig(
        fractions=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)))
    assert cfg.task.op == "x2_plus_y2" and cfg.task.p == 97 and cfg.train.steps == 100_000


def test_given_flags_override_the_preset_and_the_rest_is_kept(parse_flags):
    base = presets.get("cpu_grok")
    cfg = parse_flags("--preset=cpu_grok", "--seeds=2", "--steps=50", "--op=add")
    assert cfg.sweep.seeds == (0, 1) and cfg.train.steps == 50 and cfg.task.op == "add"
    assert cfg.model == base.model and cfg.optim == base.optim
    assert cfg.sweep.fractions == base.sweep.fractions
    assert dataclasses.replace(cfg.train, steps=base.train.steps) == base.train
    # --seed_list wins over --seeds; optional settings take "none"
    cfg = parse_flags("--preset=nanda", "--seed_list=3,5", "--batch_size=none", "--d_ff=None")
    assert cfg.sweep.seeds == (3, 5) and cfg.train.batch_size is None and cfg.model.d_ff is None
    assert cfg.model.layer_norm is False  # from the preset: no flag given for it
    assert parse_flags("--preset=nanda", "--d_ff=64", "--layer_norm").model == dataclasses.replace(
        presets.get("nanda").model, d_ff=64, layer_norm=True)
    # batch_size: a number, full or none
    assert parse_flags("--batch_size=256").train.batch_size == 256
    assert parse_flags("--preset=power", "--batch_size=full").train.batch_size == "full"
    with pytest.raises(ConfigError, match="batch_size=0 must be a positive integer"):
        parse_flags("--batch_size=0")


def test_every_config_field_has_exactly_one_flag(parse_flags):
    """The flags are generated from the dataclasses: every field of every section is reachable
    from the command line, under its own name (or the one FLAG_NAMES gives it)."""
    import common_flags

    fields = {(sec.name, f.name) for sec in dataclasses.fields(ExperimentConfig)
              for f in dataclasses.fields(sec.default.__class__)}
    covered = {(sec, field) for sec, field, _ in common_flags.FLAG_FIELDS.values()}
    assert covered == fields
    assert len({f for f in common_flags.FLAG_FIELDS if f != "seed_list"}) == len(fields)
    # a setting without a hand-written flag before: the init of the dense MLP, the momentum
    cfg = parse_flags("--preset=cpu_grok", "--momentum=0.5", "--positions=learned")
    assert (cfg.optim.momentum, cfg.model.positions) == (0.5, "learned")


def test_matmul_precision_flag_sets_the_model_field(parse_flags):
    assert parse_flags().model.matmul_precision == "highest"
    assert parse_flags("--matmul_precision=default").model.matmul_precision == "default"
    with pytest.raises(ConfigError, match="matmul_precision"):
        parse_flags("--matmul_precision=tf32")


def test_unknown_preset_flag_is_refused(parse_flags):
    with pytest.raises(ConfigError, match="unknown preset"):
        parse_flags("--preset=paper_size")


@pytest.mark.slow
def test_cpu_grok_preset_end_to_end_on_a_reduced_grid(tmp_path):
    """The README's CPU command, reduced (p = 31, two fractions, one seed, alpha 10, 1500
    steps): it trains through the CLI, writes the tables and figures, and shows the preset's
    signature: memorization at 0.3; at 0.9 a fit within 100 steps, then validation accuracy
    flat near chance for more than 5x the fit step, then a jump past 0.8."""
    import json
    import subprocess

    import pandas as pd

    out = tmp_path / "run"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "phase_diagram.py"),
                        "--preset=cpu_grok", "--p=31", "--seeds=1", "--fractions=0.3,0.9",
                        "--init_scales=10", "--steps=1500", f"--out={out}",
                        "--nocompilation_cache"],
                       capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "preset cpu_grok" in r.stdout
    saved = ExperimentConfig.from_dict(json.loads((out / "config.json").read_text())["config"])
    base = presets.get("cpu_grok")
    assert saved.model == base.model and saved.optim == base.optim
    assert saved.sweep.init_scales == (10.0,) and saved.train.steps == 1500
    for name in ("metrics.csv", "phases.csv", "cells.csv", "figures/phase_diagram.png",
                 "figures/accuracy_curves.png"):
        assert (out / name).is_file(), name
    ph = pd.read_csv(out / "phases.csv").set_index("fraction")
    assert ph.loc[0.3, "phase"] == "memorization" and ph.loc[0.3, "final_val_acc"] < 0.3
    hi = ph.loc[0.9]
    assert hi["fit_step"] <= 100 and hi["plateau"]
    assert hi["plateau_end_step"] >= 5 * hi["fit_step"] and hi["final_val_acc"] > 0.8
    df = pd.read_csv(out / "metrics.csv")
    flat = df[(df.fraction == 0.9) & (df.step >= hi["fit_step"]) & (df.step <= 5 * hi["fit_step"])]
    assert len(flat) >= 5 and flat.val_acc.max() < 0.1


def test_no_flag_name_is_defined_in_two_files():
    """Every flag of experiments/*.py is defined in one file only: the config fields' flags in
    common_flags.py (generated from the dataclasses), a flag two scripts share in a shared
    module, a script's own flag in the script. Found by reading the files' DEFINE_ calls."""
    import glob
    import re

    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    try:
        import common_flags
    finally:
        sys.path.remove(os.path.join(ROOT, "experiments"))
    where: dict = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "experiments", "*.py"))):
        name = os.path.basename(path)
        text = open(path).read()
        names = re.findall(r"DEFINE_\w+\(\s*[\"'](\w+)[\"']", text)
        assert len(names) == len(set(names)), f"{name} defines a flag twice"
        if name == "common_flags.py":  # FLAG_FIELDS: the generated flags and --seeds/--seed_list
            names = sorted(set(names) | set(common_flags.FLAG_FIELDS))
        for flag in names:
            where.setdefault(flag, []).append(name)
    twice = {f: files for f, files in where.items() if len(files) > 1}
    assert not twice, f"flags defined in more than one file: {twice}"
    assert {"steps", "seeds", "out", "resume", "variants", "init_scales"} <= set(where)
    assert where["data_dir"] == ["mnist_flags.py"] and where["gen_acc"] == ["phase_flags.py"]


@pytest.mark.slow
@pytest.mark.parametrize("script,preset", [("omnigrok_mnist.py", "omnigrok_script"),
                                           ("mnist_variants.py", "omnigrok_script"),
                                           ("slingshot.py", "slingshot"),
                                           ("progress_measures.py", "nanda_cpu")])
def test_each_script_starts_from_its_preset_and_given_flags_override_it(script, preset):
    """The script's --help names its preset as the --preset default; the script's own
    configuration is that preset with the given config flags on top (checked in a child
    process, which imports the script's flags the way the script does)."""
    import subprocess

    code = f"""
import sys; sys.argv = ["x"]
sys.path.insert(0, {os.path.join(ROOT, "experiments")!r})
import importlib.util
spec = importlib.util.spec_from_file_location("s", {os.path.join(ROOT, "experiments", script)!r})
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
from common_flags import FLAGS, config_from_flags
from jgrok import presets
FLAGS(["x"])
assert FLAGS.preset == {preset!r}, FLAGS.preset
assert config_from_flags() == presets.get({preset!r})
FLAGS.unparse_flags(); FLAGS(["x", "--steps=77", "--init_scales=2,3", "--seeds=2"])
cfg = config_from_flags()
base = presets.get({preset!r})
assert cfg.train.steps == 77 and cfg.sweep.init_scales == (2.0, 3.0)
assert cfg.sweep.seeds == (0, 1) and cfg.model == base.model and cfg.optim == base.optim
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]

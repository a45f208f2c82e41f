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
    # --seed_list wins over --seeds; the sentinel values still mean what they meant
    cfg = parse_flags("--preset=nanda", "--seed_list=3,5", "--batch_size=-1", "--d_ff=0")
    assert cfg.sweep.seeds == (3, 5) and cfg.train.batch_size is None and cfg.model.d_ff is None
    assert cfg.model.layer_norm is False  # from the preset: no flag given for it


def test_unknown_preset_flag_is_refused(parse_flags):
    with pytest.raises(ConfigError, match="unknown preset"):
        parse_flags("--preset=paper_size")

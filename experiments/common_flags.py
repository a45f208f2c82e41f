"""The flags every training entry point shares and their translation into an
`ExperimentConfig` (absl flags live only in experiments/).

One flag per config field (generated from the dataclasses), `--preset`, `--seeds`/`--seed_list`,
the output and run flags, and `--variants`. A script starts from its own preset
(`FLAGS.set_default("preset", NAME)` before parsing; phase_diagram.py and op_survey.py: `power`)
and every config flag given on the command line overrides it (`config_from_flags`). No flag name
is defined in two files of experiments/ (tests/test_presets.py checks it): a flag that two
scripts share lives here or in a small shared module (mnist_flags.py, phase_flags.py)."""

from __future__ import annotations

import dataclasses
import typing

from absl import flags

from jgrok import cli, presets
from jgrok.config import MAX_RUNS, ExperimentConfig
from jgrok.errors import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "power", "named configuration to start from (jgrok.presets: "
                    f"{', '.join(presets.PRESETS)}); the config flags given override it")

#: config fields whose flag has another name than the field
FLAG_NAMES = {("model", "kind"): "model", ("optim", "name"): "optimizer"}
#: fields set by other flags: --seeds=N (seeds 0..N-1) or --seed_list
OTHER_FLAGS = {("sweep", "seeds")}


def _field_flags() -> dict:
    """One flag per config field, generated from the dataclasses (name, help, type); each
    defaults to None, which keeps the preset's value. Lists are comma-separated (fractions
    also start:stop:num); an optional field takes 'none'."""
    out = {}
    for section in dataclasses.fields(ExperimentConfig):
        cls = section.default.__class__
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if (section.name, f.name) in OTHER_FLAGS:
                continue
            name = FLAG_NAMES.get((section.name, f.name), f.name)
            kind = hints[f.name]
            optional = type(None) in typing.get_args(kind)
            if optional:
                kinds = tuple(t for t in typing.get_args(kind) if t is not type(None))
                kind = kinds[0] if len(kinds) == 1 else kinds  # e.g. batch_size: int | "full"
            helptext = f"{f.metadata['help']} [{section.name}.{f.name}; preset's value if unset]"
            if typing.get_origin(kind) is tuple:
                flags.DEFINE_list(name, None, helptext)
                parse = _list_parser(name, typing.get_args(kind)[0])
            elif optional:
                flags.DEFINE_string(name, None, helptext)
                parse = _optional_parser(name, kind)
            else:
                {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
                 str: flags.DEFINE_string}[kind](name, None, helptext)
                parse = None
            out[name] = (section.name, f.name, parse)
    return out


def _list_parser(name, kind):
    if kind is float:
        return lambda v: cli.parse_floats(v, name)
    return lambda v: cli.parse_ints(v, name)


def _optional_parser(name, kind):
    """`kind` or a tuple of kinds, tried in order (int before str: --batch_size=256 or full)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)

    def parse(v):
        if v.strip().lower() == "none":
            return None
        for k in kinds:
            try:
                return k(v)
            except ValueError:
                pass
        raise ConfigError(f"--{name}={v!r} is not "
                          f"{' or '.join(k.__name__ for k in kinds)} or none")
    return parse


#: flag -> (config section, field, conversion of the flag value or None)
FLAG_FIELDS = _field_flags()
flags.DEFINE_integer("seeds", None, "number of seeds: init seeds 0..seeds-1 [sweep.seeds; "
                     "preset's value if unset]")
flags.DEFINE_list("seed_list", None, "explicit init seeds (instead of --seeds)")
# output
flags.DEFINE_string("out", "", "run directory, or the folder of a script's run directories "
                    "(phase_diagram.py: default runs/<op>-<timestamp>)")
flags.DEFINE_bool("resume", False, "continue the sweep(s) in --out from the newest checkpoints")
flags.DEFINE_list("variants", None, "named variants of the preset to train, each in its own run "
                  "directory <out>/<variant>/ (the script's docstring lists them)")
flags.DEFINE_float("memory_gb", None, "device memory (GiB per device) to plan waves of runs "
                   "for; unset: the device's own limit (accelerators) or the host's free memory "
                   "(CPU)")
flags.DEFINE_bool("figures", True, "write analysis tables and figures at the end "
                  "(phase_diagram.py)")
flags.DEFINE_bool("tensorboard", False, "also write per-cell aggregates (mean/median train and "
                  "val accuracy, share of runs fitted/generalized/diverged) to <out>/tensorboard "
                  "while training; needs tensorboardX (pip install -e \".[tensorboard]\")")
flags.DEFINE_bool("wandb", False, "also log every run's curves (grouped by cell) and the config "
                  "to one Weights & Biases run per sweep, in <out>/wandb ($WANDB_MODE=offline: no "
                  "network); needs wandb (pip install -e \".[wandb]\")")
flags.DEFINE_string("wandb_project", "jgrok", "the Weights & Biases project of --wandb")
flags.DEFINE_bool("compilation_cache", True, "keep compiled programs in JAX's persistent cache "
                  "(~/.cache/jgrok/jax, or $JAX_COMPILATION_CACHE_DIR) so a resumed or repeated "
                  "sweep does not compile again")
flags.DEFINE_integer("cpu_devices", 0, "split the CPU into this many devices and shard the "
                     "runs over them, one core each (0: one per core, or one per process with "
                     "--coordinator; 1: one CPU device using every core); ignored on GPU/TPU and "
                     "when $XLA_FLAGS sets --xla_force_host_platform_device_count", lower_bound=0)
# several processes (hosts): see docs/multihost.md
flags.DEFINE_string("coordinator", "", "host:port of process 0; set to run one sweep over "
                    "several processes (jax.distributed; phase_diagram.py)")
flags.DEFINE_integer("num_processes", 1, "number of processes (with --coordinator)")
flags.DEFINE_integer("process_id", 0, "this process's index in [0, num_processes)")


def _seeds(_):
    if FLAGS.seed_list:
        return cli.parse_ints(FLAGS.seed_list, "seed_list")
    if not 1 <= FLAGS.seeds <= MAX_RUNS:
        raise ConfigError(f"--seeds={FLAGS.seeds} must be in [1, {MAX_RUNS:,}]")
    return tuple(range(FLAGS.seeds))


FLAG_FIELDS.update(seeds=("sweep", "seeds", _seeds), seed_list=("sweep", "seeds", _seeds))


def config_from_flags() -> ExperimentConfig:
    """The `--preset` config (default: the script's preset; `power`, the paper's, unless the
    script set another), with every flag that is given on the command line applied on top;
    flags left out keep the preset's values."""
    cfg = presets.get(FLAGS.preset)
    given = {name for name in FLAG_FIELDS if FLAGS[name].present}
    if FLAGS["seed_list"].present:
        given.discard("seeds")
    changes: dict = {}
    for name in sorted(given):
        section, field, convert = FLAG_FIELDS[name]
        value = FLAGS[name].value
        changes.setdefault(section, {})[field] = convert(value) if convert else value
    cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **kw)
                                      for section, kw in changes.items()})
    cfg.validate()
    from jgrok import writers

    for flag, package in (("tensorboard", "tensorboardX"), ("wandb", "wandb")):
        if FLAGS[flag].value:  # before anything is trained
            writers.require(package)
    return cfg


def writer_options() -> dict:
    """The metric writers the flags ask for, as `rundir.run_sweep`'s keyword arguments."""
    return dict(tensorboard=FLAGS.tensorboard,
                wandb_project=FLAGS.wandb_project if FLAGS.wandb else None)


def memory_limit() -> int | None:
    """--memory_gb in bytes (None: unset)."""
    if FLAGS.memory_gb is None:
        return None
    if not FLAGS.memory_gb > 0:
        raise ConfigError(f"--memory_gb={FLAGS.memory_gb} must be > 0 (leave it out for the "
                          f"device's own limit)")
    return int(FLAGS.memory_gb * 2**30)


def refuse_given(*names: str, why: str = "this script does not use it") -> None:
    """One ConfigError line for a shared flag given to a script that has no use for it."""
    given = [n for n in names if FLAGS[n].present]
    if given:
        raise ConfigError(f"--{given[0]} is not taken here: {why}")


def variants_from_flag(known) -> list[str]:
    """The --variants list, each checked against `known` (an iterable of names)."""
    names = [v.strip() for v in (FLAGS.variants or []) if v.strip()]
    known = list(known)
    bad = [v for v in names if v not in known]
    if bad or not names:
        raise ConfigError(f"--variants={','.join(FLAGS.variants or [])!r}: unknown {bad}; "
                          f"known: {', '.join(known)}")
    return names

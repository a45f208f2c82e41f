"""Flags shared by the algorithmic-task entry points and their translation into an
`ExperimentConfig` (absl flags live only in experiments/)."""

from __future__ import annotations

import dataclasses
import typing

from absl import flags

from jgrok import cli
from jgrok.config import MAX_RUNS, ExperimentConfig
from jgrok.errors import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "power", "named configuration to start from (jgrok.presets: "
                    "power, cpu_grok, thesis, nanda, gromov); the flags given override it")

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
                kind = next(t for t in typing.get_args(kind) if t is not type(None))
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
    def parse(v):
        if v.strip().lower() == "none":
            return None
        try:
            return kind(v)
        except ValueError:
            raise ConfigError(f"--{name}={v!r} is not {kind.__name__} or none") from None
    return parse


#: flag -> (config section, field, conversion of the flag value or None)
FLAG_FIELDS = _field_flags()
flags.DEFINE_integer("seeds", None, "number of seeds: init seeds 0..seeds-1 [sweep.seeds; "
                     "preset's value if unset]")
flags.DEFINE_list("seed_list", None, "explicit init seeds (instead of --seeds)")
# output
flags.DEFINE_string("out", "", "run directory (default runs/<op>-<timestamp>)")
flags.DEFINE_bool("resume", False, "continue the sweep in --out from its newest checkpoint")
flags.DEFINE_float("memory_gb", 0.0, "device memory (GiB per device) to plan waves of runs "
                   "for; 0: the device's own limit (accelerators) or the host's free memory (CPU)")
flags.DEFINE_bool("figures", True, "write analysis tables and figures at the end")
flags.DEFINE_bool("tensorboard", False, "also write per-cell aggregates (mean/median train and "
                  "val accuracy, share of runs fitted/generalized/diverged) to <out>/tensorboard "
                  "while training; needs tensorboardX (pip install -e \".[tensorboard]\")")
flags.DEFINE_bool("compilation_cache", True, "keep compiled programs in JAX's persistent cache "
                  "(~/.cache/jgrok/jax, or $JAX_COMPILATION_CACHE_DIR) so a resumed or repeated "
                  "sweep does not compile again")
flags.DEFINE_integer("cpu_devices", 0, "split the CPU into this many devices and shard the "
                     "runs over them, one core each (0: one per core, or one per process with "
                     "--coordinator; 1: one CPU device using every core); ignored on GPU/TPU and when $XLA_FLAGS sets "
                     "--xla_force_host_platform_device_count", lower_bound=0)
# several processes (hosts): see docs/multihost.md
flags.DEFINE_string("coordinator", "", "host:port of process 0; set to run one sweep over "
                    "several processes (jax.distributed)")
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
    """The `--preset` config (default: `power`, the paper's), with every flag that is given on
    the command line applied on top; flags left out keep the preset's values."""
    from jgrok import presets

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
    if FLAGS.tensorboard:  # before anything is trained
        from jgrok.reporting import require_tensorboardx

        require_tensorboardx()
    return cfg

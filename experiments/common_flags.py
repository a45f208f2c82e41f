"""Flags shared by the algorithmic-task entry points and their translation into an
`ExperimentConfig` (absl flags live only in experiments/)."""

from __future__ import annotations

import dataclasses
import os
import sys

from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jgrok import cli  # noqa: E402
from jgrok.config import MAX_RUNS, ExperimentConfig  # noqa: E402
from jgrok.errors import ConfigError  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "power", "named configuration to start from (jgrok.presets: "
                    "power, cpu_grok, thesis, nanda, gromov); the flags given override it")
# task
flags.DEFINE_string("op", "x2_plus_y2", "operation name, or group:<path-to-cayley.csv>")
flags.DEFINE_integer("p", 97, "modulus (prime for div ops)")
flags.DEFINE_float("label_noise", 0.0, "fraction of training answers replaced by wrong ones")
# grid
flags.DEFINE_list("fractions", ["0.1:0.9:9"], "training fractions: a list or start:stop:num")
flags.DEFINE_integer("seeds", 1, "number of seeds (0..seeds-1); ignored if --seed_list")
flags.DEFINE_list("seed_list", [], "explicit init seeds")
flags.DEFINE_list("split_seeds", [], "split seeds crossed with the init seeds (default: paired)")
flags.DEFINE_list("weight_decays", ["1.0"], "weight decays")
flags.DEFINE_list("lrs", ["1e-3"], "learning rates")
# model
flags.DEFINE_string("model", "transformer", "transformer | mlp")
flags.DEFINE_integer("n_layers", 2, "transformer layers")
flags.DEFINE_integer("d_model", 128, "transformer width (also the MLP embedding size)")
flags.DEFINE_integer("n_heads", 4, "attention heads")
flags.DEFINE_integer("d_ff", 0, "FFN width (0: 4 * d_model)")
flags.DEFINE_integer("mlp_width", 256, "MLP hidden width")
flags.DEFINE_integer("mlp_depth", 2, "MLP hidden layers")
flags.DEFINE_string("mlp_activation", "relu", "relu | gelu | quadratic")
flags.DEFINE_string("mlp_input", "embed", "embed | onehot")
flags.DEFINE_list("init_scales", ["1.0"], "multiply all initial parameters by these (alpha)")
flags.DEFINE_string("matmul_precision", "highest", "float32 matmul precision inside the jitted "
                    "steps: highest (full float32) | high | default (GPU: TF32, TPU: one bf16 "
                    "pass; faster, less exact; no effect on CPU); see BUILD.md")
# optimizer
flags.DEFINE_string("optimizer", "adamw", "adamw | adam | sgd")
flags.DEFINE_float("b1", 0.9, "Adam beta1")
flags.DEFINE_float("b2", 0.98, "Adam beta2")
flags.DEFINE_float("eps", 1e-8, "Adam epsilon")
flags.DEFINE_integer("warmup_steps", 10, "linear warm-up steps")
flags.DEFINE_string("schedule", "constant", "constant | cosine (after warm-up)")
flags.DEFINE_bool("decay_to_init", False, "weight decay towards the initial weights")
# loop
flags.DEFINE_integer("steps", 100_000, "training steps per run")
flags.DEFINE_integer("batch_size", -1, "-1: min(512, ceil(N_train/2)) (paper); 0: full batch")
flags.DEFINE_string("loss", "ce", "ce | mse")
flags.DEFINE_integer("eval_every", 100, "evaluate every this many steps")
flags.DEFINE_integer("log_eval", 0, "> 0: this many log-spaced evaluations instead")
flags.DEFINE_integer("checkpoint_every", 10_000, "checkpoint interval in steps")
flags.DEFINE_integer("keep_checkpoints", 3, "checkpoint versions kept")
# output
flags.DEFINE_string("out", "", "run directory (default runs/<op>-<timestamp>)")
flags.DEFINE_bool("resume", False, "continue the sweep in --out from its newest checkpoint")
flags.DEFINE_float("memory_gb", 0.0, "device memory (GiB per device) to plan waves of runs "
                   "for; 0: the device's own limit (accelerators) or the host's free memory (CPU)")
flags.DEFINE_bool("figures", True, "write analysis tables and figures at the end")
flags.DEFINE_bool("compilation_cache", True, "keep compiled programs in JAX's persistent cache "
                  "(~/.cache/jgrok/jax, or $JAX_COMPILATION_CACHE_DIR) so a resumed or repeated "
                  "sweep does not compile again")
# several processes (hosts): see docs/multihost.md
flags.DEFINE_string("coordinator", "", "host:port of process 0; set to run one sweep over "
                    "several processes (jax.distributed)")
flags.DEFINE_integer("num_processes", 1, "number of processes (with --coordinator)")
flags.DEFINE_integer("process_id", 0, "this process's index in [0, num_processes)")


def enable_compilation_cache() -> None:
    """Point JAX's persistent compilation cache at ~/.cache/jgrok/jax (unless
    $JAX_COMPILATION_CACHE_DIR names another folder or --nocompilation_cache)."""
    if not FLAGS.compilation_cache:
        return
    import jax

    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        jax.config.update("jax_compilation_cache_dir",
                          os.path.join(os.path.expanduser("~"), ".cache", "jgrok", "jax"))
    if not os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def init_distributed() -> None:
    """`jax.distributed.initialize` from --coordinator/--num_processes/--process_id; must run
    before anything else uses JAX. Without --coordinator: nothing (one process), except on
    TPU pods and SLURM/Open MPI clusters, where `--coordinator=auto` lets JAX detect them."""
    if not FLAGS.coordinator:
        return
    import jax

    if FLAGS.coordinator == "auto":
        jax.distributed.initialize()
        return
    if FLAGS.num_processes < 1 or not 0 <= FLAGS.process_id < FLAGS.num_processes:
        raise ConfigError(f"--process_id={FLAGS.process_id} must be in [0, "
                          f"--num_processes={FLAGS.num_processes})")
    # CPU processes exchange arrays through gloo (GPUs and TPUs use their own collectives)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)


def _seeds(_):
    if FLAGS.seed_list:
        return cli.parse_ints(FLAGS.seed_list, "seed_list")
    if not 1 <= FLAGS.seeds <= MAX_RUNS:
        raise ConfigError(f"--seeds={FLAGS.seeds} must be in [1, {MAX_RUNS:,}]")
    return tuple(range(FLAGS.seeds))


def _floats(name):
    return lambda v: cli.parse_floats(v, name)


#: flag -> (config section, field, conversion of the flag value)
FLAG_FIELDS = {
    "op": ("task", "op", None), "p": ("task", "p", None),
    "label_noise": ("task", "label_noise", None),
    "fractions": ("sweep", "fractions", _floats("fractions")),
    "seeds": ("sweep", "seeds", _seeds), "seed_list": ("sweep", "seeds", _seeds),
    "split_seeds": ("sweep", "split_seeds",
                    lambda v: cli.parse_ints(v, "split_seeds") if v else None),
    "weight_decays": ("sweep", "weight_decays", _floats("weight_decays")),
    "lrs": ("sweep", "lrs", _floats("lrs")),
    "init_scales": ("sweep", "init_scales", _floats("init_scales")),
    "model": ("model", "kind", None), "n_layers": ("model", "n_layers", None),
    "d_model": ("model", "d_model", None), "n_heads": ("model", "n_heads", None),
    "d_ff": ("model", "d_ff", lambda v: v or None),
    "mlp_width": ("model", "mlp_width", None), "mlp_depth": ("model", "mlp_depth", None),
    "mlp_activation": ("model", "mlp_activation", None),
    "mlp_input": ("model", "mlp_input", None),
    "matmul_precision": ("model", "matmul_precision", None),
    "optimizer": ("optim", "name", None), "b1": ("optim", "b1", None),
    "b2": ("optim", "b2", None), "eps": ("optim", "eps", None),
    "warmup_steps": ("optim", "warmup_steps", None), "schedule": ("optim", "schedule", None),
    "decay_to_init": ("optim", "decay_to_init", None),
    "steps": ("train", "steps", None),
    "batch_size": ("train", "batch_size", lambda v: None if v == -1 else v),
    "loss": ("train", "loss", None), "eval_every": ("train", "eval_every", None),
    "log_eval": ("train", "log_eval", None),
    "checkpoint_every": ("train", "checkpoint_every", None),
    "keep_checkpoints": ("train", "keep_checkpoints", None),
}


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
    return cfg

"""Omnigrok's MNIST experiment (Liu, Michaud & Tegmark 2022, scripts/train-mnist-mlp.py):
a 784-200-200-10 ReLU MLP on the first 1000 MNIST training images, every initial parameter
multiplied by alpha, trained with AdamW (lr 1e-3, weight decay 0.1, batch 256), evaluated at
powers of two on the 1000 training images and the 10k test images.

    python experiments/omnigrok_mnist.py --data_dir=/path/to/mnist --alphas=1,7 --seeds=2 \
        --losses=mse --constant_norm=both --steps=10000 --out=results/omnigrok

Each (loss, constant_norm) variant is one vmapped sweep over seeds x alphas x weight decays.
Writes <out>/metrics.csv (all variants, `variant` column), <out>/summary.md and .csv (per
variant x alpha x weight decay: final train/val accuracy, step at which val accuracy first
comes within 0.01 of its final value, weight norm at start and end), <out>/acc_norm.png/.pdf
and one config JSON per variant under <out>/configs/.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jgrok import cli  # noqa: E402
from jgrok.errors import ConfigError  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "", "folder with the four MNIST IDX files (required)")
flags.DEFINE_list("alphas", ["1", "7"], "initialisation scales alpha")
flags.DEFINE_integer("seeds", 2, "number of seeds (0..seeds-1)")
flags.DEFINE_list("weight_decays", ["0.1"], "AdamW weight decays")
flags.DEFINE_list("losses", ["mse"], "losses to run: mse, ce")
flags.DEFINE_string("constant_norm", "both", "false | true | both: rescale the weights to their "
                    "initial norm after every step")
flags.DEFINE_integer("steps", 10_000, "optimization steps")
flags.DEFINE_integer("n_train", 1000, "first n_train MNIST training images")
flags.DEFINE_float("lr", 1e-3, "learning rate")
flags.DEFINE_integer("batch_size", 256, "batch size")
flags.DEFINE_integer("eval_every", 0, "> 0: also evaluate every this many steps "
                     "(powers of two always)")
flags.DEFINE_string("weight_init", "torch", "layer init before the alpha scaling: torch (nn.Linear's, "
                    "as Omnigrok's script) or default (Flax's, sqrt(3) x the norm)")
flags.DEFINE_string("out", "results/omnigrok", "output folder")


def _constant_norm_values(spec: str) -> tuple[bool, ...]:
    s = spec.strip().lower()
    if s in ("both", "all"):
        return (False, True)
    if s in ("true", "1", "yes", "on"):
        return (True,)
    if s in ("false", "0", "no", "off"):
        return (False,)
    raise ConfigError(f"--constant_norm={spec!r}: expected false, true or both")


def variants_from_flags():
    losses = tuple(s.strip().lower() for s in FLAGS.losses if s.strip())
    if not losses:
        raise ConfigError("--losses is empty; give mse and/or ce")
    for loss in losses:
        if loss not in ("mse", "ce"):
            raise ConfigError(f"--losses: unknown loss {loss!r}; known: mse, ce")
    return [(loss, cn) for loss in losses for cn in _constant_norm_values(FLAGS.constant_norm)]


def base_config():
    from jgrok.data.omnigrok import omnigrok_preset

    if FLAGS.seeds < 1:
        raise ConfigError(f"--seeds={FLAGS.seeds} must be >= 1")
    if FLAGS.batch_size < 1:
        raise ConfigError(f"--batch_size={FLAGS.batch_size} must be >= 1")
    cfg = omnigrok_preset(FLAGS.steps, weight_init=FLAGS.weight_init) if FLAGS.steps >= 1 else None
    if cfg is None:
        raise ConfigError(f"--steps={FLAGS.steps} must be >= 1")
    cfg = dataclasses.replace(
        cfg,
        train=dataclasses.replace(cfg.train, batch_size=FLAGS.batch_size),
        sweep=dataclasses.replace(
            cfg.sweep, seeds=tuple(range(FLAGS.seeds)),
            weight_decays=cli.parse_floats(FLAGS.weight_decays, "weight_decays"),
            lrs=(FLAGS.lr,), init_scales=cli.parse_floats(FLAGS.alphas, "alphas")))
    cfg.validate()
    return cfg


def variant_config(cfg, loss: str, constant_norm: bool):
    return dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, loss=loss),
        optim=dataclasses.replace(cfg.optim, constant_norm=constant_norm))


def variant_name(loss: str, constant_norm: bool) -> str:
    return f"{loss}{'-constnorm' if constant_norm else ''}"


def main(argv):
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.data_dir:
        raise ConfigError("--data_dir is required: a folder with the four MNIST IDX files")
    variants = variants_from_flags()
    cfg = base_config()
    if FLAGS.eval_every < 0:
        raise ConfigError(f"--eval_every={FLAGS.eval_every} must be >= 0")
    from jgrok.data.omnigrok import mnist_dataset, omnigrok_eval_steps, train_variant

    dataset = mnist_dataset(FLAGS.data_dir, n_train=FLAGS.n_train)  # fails before JAX work

    import jax
    import pandas as pd

    from jgrok import metrics as mio
    from jgrok import plots_norm

    eval_steps = set(omnigrok_eval_steps(cfg.train.steps))
    if FLAGS.eval_every:
        eval_steps |= set(range(0, cfg.train.steps + 1, FLAGS.eval_every))
    out = FLAGS.out
    os.makedirs(out, exist_ok=True)
    n_runs = len(cfg.sweep.grid())
    print(f"{dataset.name}: {int((~dataset.val_rows).sum())} train / "
          f"{int(dataset.val_rows.sum())} test rows; {len(variants)} variants x {n_runs} runs "
          f"(alphas {list(cfg.sweep.init_scales)}, seeds {list(cfg.sweep.seeds)}, "
          f"weight decays {list(cfg.sweep.weight_decays)}); {cfg.train.steps} steps; "
          f"backend {jax.default_backend()}", flush=True)
    t_all = time.perf_counter()
    frames = []
    wall = {}
    for loss, cn in variants:
        name = variant_name(loss, cn)
        vcfg = variant_config(cfg, loss, cn)
        mio.write_json(dict(config=vcfg.to_dict(), eval_steps=sorted(eval_steps),
                            dataset=dataset.name, versions=mio.versions()),
                       os.path.join(out, "configs", f"{name}.json"))
        print(f"variant {name}", flush=True)
        t0 = time.perf_counter()
        df = train_variant(vcfg, dataset, sorted(eval_steps),
                           coords=dict(variant=name, loss=loss, constant_norm=int(cn)),
                           log=lambda s: print(s, flush=True))
        wall[name] = time.perf_counter() - t0
        print(f"variant {name} done in {wall[name]:.0f}s", flush=True)
        frames.append(df)
        mio.write_csv(pd.concat(frames, ignore_index=True), os.path.join(out, "metrics.csv"))

    df = pd.concat(frames, ignore_index=True)
    # `run` numbers are per variant; make them unique across the concatenated table
    df["run"] = df.groupby(["variant", "run"], sort=False).ngroup()
    mio.write_csv(df, os.path.join(out, "metrics.csv"))
    keys = ["variant", "init_scale", "weight_decay"]
    summary = plots_norm.summary_table(df, keys)
    summary["wall_s_variant"] = summary["variant"].map(wall).round(0)
    mio.write_csv(summary, os.path.join(out, "summary.csv"))
    md = mio.markdown_table(summary, missing="-") + "\n"
    mio.atomic_write(os.path.join(out, "summary.md"),
                     lambda tmp: open(tmp, "w").write(md))
    plots_norm.plot_acc_norm(df, os.path.join(out, "acc_norm"),
                             panel_keys=["variant", "weight_decay"], line_keys=["init_scale"],
                             title=f"{dataset.name}: median over {FLAGS.seeds} seed(s)")
    print(md)
    print(f"total wall time {time.perf_counter() - t_all:.0f}s; wrote {out}/metrics.csv, "
          f"summary.md, acc_norm.png/.pdf", flush=True)


if __name__ == "__main__":
    cli.run_main(main)

"""Omnigrok's MNIST experiment (Liu, Michaud & Tegmark 2022): a 784-200-200-10 ReLU MLP on the
first 1000 MNIST training images, every initial parameter multiplied by alpha, AdamW, evaluated
at powers of two on the 1000 training images and the 10k test images (`jgrok.presets.
omnigrok_preset`: `--setup=script` is their script, wd 0.1 / batch 256; `notebook` is their
notebook, wd 0.01 / batch 200).

    python experiments/omnigrok_mnist.py --data_dir=/path/to/mnist --alphas=1,7 --seeds=2 \
        --losses=mse --constant_norm=both --steps=10000 --out=results/omnigrok

Each (loss, constant_norm) variant is one sweep over seeds x alphas x weight decays in its own
resumable run directory <out>/<variant>/ (`jgrok.rundir.run_variants`; `--resume` continues
them). Writes <out>/metrics.csv (all variants, `variant` column), <out>/summary.md and .csv
(per variant x alpha x weight decay: final train/val accuracy, the step at which val accuracy
first comes within 0.01 of its final value, weight norm at start and end) and
<out>/acc_norm.png/.pdf.
"""

from __future__ import annotations

import dataclasses
import os
import time

from absl import flags

from jgrok import cli
from jgrok.errors import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "", "folder with the four MNIST IDX files (required)")
flags.DEFINE_string("setup", "script", "Omnigrok's set-up: script (wd 0.1, batch 256) or "
                    "notebook (wd 0.01, batch 200); --weight_decays/--batch_size override it")
flags.DEFINE_list("alphas", ["1", "7"], "initialisation scales alpha")
flags.DEFINE_integer("seeds", 2, "number of seeds (0..seeds-1)", lower_bound=1)
flags.DEFINE_list("weight_decays", None, "AdamW weight decays (default: the set-up's)")
flags.DEFINE_list("losses", ["mse"], "losses to run: mse, ce")
flags.DEFINE_enum("constant_norm", "both", ["false", "true", "both"],
                  "rescale the weights to their initial norm after every step")
flags.DEFINE_integer("steps", 10_000, "optimization steps", lower_bound=1)
flags.DEFINE_integer("n_train", 1000, "first n_train MNIST training images", lower_bound=1)
flags.DEFINE_float("lr", 1e-3, "learning rate")
flags.DEFINE_integer("batch_size", None, "batch size (default: the set-up's)", lower_bound=1)
flags.DEFINE_integer("eval_every", None, "also evaluate every this many steps (powers of two "
                     "always)", lower_bound=1)
flags.DEFINE_integer("checkpoint_every", 10_000, "checkpoint interval in steps", lower_bound=1)
flags.DEFINE_enum("weight_init", "torch", ["torch", "default"], "layer init before the alpha "
                  "scaling: torch (nn.Linear's, as Omnigrok's script) or default (Flax's)")
flags.DEFINE_string("out", "results/omnigrok", "output folder")
flags.DEFINE_bool("resume", False, "continue the variants in --out from their checkpoints")


def variants_from_flags() -> dict:
    """{variant name: config} for every loss x constant-norm setting asked for."""
    from jgrok import presets

    losses = [s.strip().lower() for s in FLAGS.losses if s.strip()]
    if not losses or any(loss not in ("mse", "ce") for loss in losses):
        raise ConfigError(f"--losses={','.join(FLAGS.losses)!r}: give mse and/or ce")
    base = presets.omnigrok_preset(FLAGS.steps, weight_init=FLAGS.weight_init, setup=FLAGS.setup)
    train = dict(checkpoint_every=FLAGS.checkpoint_every)
    if FLAGS.batch_size is not None:
        train["batch_size"] = FLAGS.batch_size
    sweep = dict(seeds=tuple(range(FLAGS.seeds)), lrs=(FLAGS.lr,),
                 init_scales=cli.parse_floats(FLAGS.alphas, "alphas"))
    if FLAGS.weight_decays is not None:
        sweep["weight_decays"] = cli.parse_floats(FLAGS.weight_decays, "weight_decays")
    base = dataclasses.replace(base, train=dataclasses.replace(base.train, **train),
                               sweep=dataclasses.replace(base.sweep, **sweep))
    norms = {"false": (False,), "true": (True,), "both": (False, True)}[FLAGS.constant_norm]
    variants = {}
    for loss in losses:
        for cn in norms:
            cfg = dataclasses.replace(
                base, train=dataclasses.replace(base.train, loss=loss),
                optim=dataclasses.replace(base.optim, constant_norm=cn))
            cfg.validate()
            variants[f"{loss}{'-constnorm' if cn else ''}"] = cfg
    return variants


def main(argv):
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.data_dir:
        raise ConfigError("--data_dir is required: a folder with the four MNIST IDX files")
    variants = variants_from_flags()
    from jgrok.data.omnigrok import mnist_dataset

    dataset = mnist_dataset(FLAGS.data_dir, n_train=FLAGS.n_train)  # fails before JAX work
    from jgrok import figures, presets, rundir, tables
    from jgrok.analysis.summary import summary_table

    steps = set(presets.omnigrok_eval_steps(FLAGS.steps))
    if FLAGS.eval_every:
        steps |= set(range(0, FLAGS.steps + 1, FLAGS.eval_every))
    cfg = next(iter(variants.values()))
    print(f"{dataset.name}: {int((~dataset.val_rows).sum())} train / "
          f"{int(dataset.val_rows.sum())} test rows; variants {list(variants)} x "
          f"{len(cfg.sweep.grid())} runs (alphas {list(cfg.sweep.init_scales)}, seeds "
          f"{list(cfg.sweep.seeds)}, weight decays {list(cfg.sweep.weight_decays)}, batch "
          f"{cfg.train.batch_size}); {FLAGS.steps} steps", flush=True)
    t0 = time.perf_counter()
    df = rundir.run_variants(variants, dataset, FLAGS.out, resume=FLAGS.resume,
                             eval_steps=sorted(steps),
                             coords={n: dict(loss=c.train.loss,
                                             constant_norm=int(c.optim.constant_norm))
                                     for n, c in variants.items()})
    summary = summary_table(df, ["variant", "init_scale", "weight_decay"])
    tables.write_csv(summary, os.path.join(FLAGS.out, "summary.csv"))
    md = tables.markdown_table(summary, missing="-") + "\n"
    tables.write_text(md, os.path.join(FLAGS.out, "summary.md"))
    figures.plot_acc_norm(df, os.path.join(FLAGS.out, "acc_norm"),
                          panel_keys=["variant", "weight_decay"], line_keys=["init_scale"],
                          title=f"{dataset.name}: median over {FLAGS.seeds} seed(s)")
    print(md)
    print(f"total wall time {time.perf_counter() - t0:.0f}s; wrote {FLAGS.out}/metrics.csv, "
          f"summary.md, acc_norm.png/.pdf", flush=True)


if __name__ == "__main__":
    cli.run_main(main)

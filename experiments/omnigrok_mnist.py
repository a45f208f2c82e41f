"""Omnigrok's MNIST experiment (Liu, Michaud & Tegmark 2022): a 784-200-200-10 ReLU MLP on the
first 1000 MNIST training images, every initial parameter multiplied by alpha (`--init_scales`),
AdamW, evaluated at powers of two on the 1000 training images and the 10k test images.

    python experiments/omnigrok_mnist.py --data_dir=/path/to/mnist --init_scales=1,7 --seeds=2 \
        --variants=mse,mse-constnorm --steps=10000 --out=results/omnigrok

Starts from the preset `omnigrok_script` (their script: weight decay 0.1, batch 256, alpha 7,
torch's layer init, lr 1e-3, 1 seed, 10000 steps; `jgrok.presets.omnigrok_preset`);
`--preset=omnigrok_notebook` is their notebook (wd 0.01, batch 200, alpha 8). Every config flag
given (`--weight_decays`, `--batch_size`, `--lrs`, `--weight_init`, ...) overrides the preset.
`--eval_every=N` also evaluates every N steps (the powers of two always).

`--variants`: mse, mse-constnorm, ce, ce-constnorm (the loss; `-constnorm` rescales the weights
to their initial norm after every step). Each variant is one sweep over seeds x init scales x
weight decays in its own resumable run directory <out>/<variant>/ (`jgrok.rundir.run_variants`;
`--resume` continues them). Writes <out>/metrics.csv (all variants, `variant` column),
<out>/summary.md and .csv (per variant x alpha x weight decay: final train/val accuracy, the
step at which val accuracy first comes within 0.01 of its final value, weight norm at start and
end) and <out>/acc_norm.png/.pdf.
"""

from __future__ import annotations

import dataclasses
import os
import time

import mnist_flags  # noqa: F401  (--data_dir, --n_train)
from common_flags import FLAGS, config_from_flags, memory_limit, refuse_given, variants_from_flag

from jgrok import cli
from jgrok.errors import ConfigError

FLAGS.set_default("preset", "omnigrok_script")
FLAGS.set_default("out", "results/omnigrok")
FLAGS.set_default("variants", ["mse", "mse-constnorm"])

#: variant name -> (loss, constant_norm); the names are the run directories' names
VARIANTS = {"mse": ("mse", False), "mse-constnorm": ("mse", True), "ce": ("ce", False),
            "ce-constnorm": ("ce", True)}


def variants_from_flags() -> dict:
    """{variant name: config} for every variant in --variants."""
    refuse_given("loss", "constant_norm", why="give the loss and constant-norm setting as "
                 f"--variants ({', '.join(VARIANTS)})")
    refuse_given("coordinator", "figures", why="omnigrok_mnist.py runs in one process and always "
                 "writes its summary and figure")
    base = config_from_flags()
    variants = {}
    for name in variants_from_flag(VARIANTS):
        loss, cn = VARIANTS[name]
        cfg = dataclasses.replace(base, train=dataclasses.replace(base.train, loss=loss),
                                  optim=dataclasses.replace(base.optim, constant_norm=cn))
        cfg.validate()
        variants[name] = cfg
    return variants


def main(argv):
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.data_dir:
        raise ConfigError("--data_dir is required: a folder with the four MNIST IDX files")
    variants = variants_from_flags()
    from jgrok.data.omnigrok import mnist_dataset

    dataset = mnist_dataset(FLAGS.data_dir, n_train=FLAGS.n_train)  # fails before JAX work
    cli.enable_compilation_cache(FLAGS.compilation_cache)
    from jgrok import figures, presets, rundir, tables
    from jgrok.analysis.summary import summary_table

    cfg = next(iter(variants.values()))
    n_steps = cfg.train.steps
    steps = set(presets.omnigrok_eval_steps(n_steps))
    if FLAGS["eval_every"].present:
        steps |= set(range(0, n_steps + 1, cfg.train.eval_every))
    print(f"{dataset.name}: {int((~dataset.val_rows).sum())} train / "
          f"{int(dataset.val_rows.sum())} test rows; variants {list(variants)} x "
          f"{len(cfg.sweep.grid())} runs (alphas {list(cfg.sweep.init_scales)}, seeds "
          f"{list(cfg.sweep.seeds)}, weight decays {list(cfg.sweep.weight_decays)}, batch "
          f"{cfg.train.batch_size}); {n_steps} steps", flush=True)
    t0 = time.perf_counter()
    df = rundir.run_variants(variants, dataset, FLAGS.out, resume=FLAGS.resume,
                             eval_steps=sorted(steps), memory_limit=memory_limit(),
                             tensorboard=FLAGS.tensorboard,
                             coords={n: dict(loss=c.train.loss,
                                             constant_norm=int(c.optim.constant_norm))
                                     for n, c in variants.items()})
    summary = summary_table(df, ["variant", "init_scale", "weight_decay"])
    tables.write_csv(summary, os.path.join(FLAGS.out, "summary.csv"))
    md = tables.markdown_table(summary, missing="-") + "\n"
    tables.write_text(md, os.path.join(FLAGS.out, "summary.md"))
    figures.plot_acc_norm(df, os.path.join(FLAGS.out, "acc_norm"),
                          panel_keys=["variant", "weight_decay"], line_keys=["init_scale"],
                          title=f"{dataset.name}: median over {len(cfg.sweep.seeds)} seed(s)")
    print(md)
    print(f"total wall time {time.perf_counter() - t0:.0f}s; wrote {FLAGS.out}/metrics.csv, "
          f"summary.md, acc_norm.png/.pdf", flush=True)


if __name__ == "__main__":
    cli.run_main(main)

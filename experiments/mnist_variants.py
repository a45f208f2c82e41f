"""The course study's output-layer and loss variants of Omnigrok's MNIST set-up
(`jgrok.presets.STUDY_VARIANTS`), on MNIST and Wine Quality, and the control for the claim
"the grokking delay is caused by a linear output trained with MSE from a large init".

    python experiments/mnist_variants.py --data_dir=/path/to/mnist --wine_dir=/path/to/wine \
        --steps=10000 --seeds=2 --out=results/mnist_variants

Parts: ``mnist`` (784-200-200-10 MLP at alpha ``--alpha``, 1000 training / 10k test images),
``wine`` (Wine Quality, ``--wine_color``) and ``control`` (MSE + linear output vs CE at alpha 1
and ``--alpha`` on MNIST 0-vs-1 and a separable task, classified by `jgrok.analysis.phases`).
Each variant is a resumable run directory <out>/<part>/[<task>/]<variant>/ (`--resume`). Per
part: metrics.csv, tables.md (step x accuracy x norm), summary.csv, acc_norm.png/.pdf and,
for the control, phases.csv.
"""

from __future__ import annotations

import dataclasses
import os
import time

from absl import flags

from jgrok import cli
from jgrok.errors import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "", "folder with the four MNIST IDX files (parts mnist, control)")
flags.DEFINE_string("wine_dir", "", "folder with the Wine Quality CSVs (part wine)")
flags.DEFINE_list("parts", ["mnist", "wine", "control"], "which parts to run")
flags.DEFINE_list("variants", ["baseline", "sigmoid_hidden", "sigmoid_output",
                               "softmax_output", "cross_entropy"], "variants (mnist, wine)")
flags.DEFINE_enum("setup", "script", ["script", "notebook"], "Omnigrok's set-up (presets.py)")
flags.DEFINE_float("alpha", 7.0, "initialisation scale of the variants (Omnigrok: 7)")
flags.DEFINE_integer("seeds", 2, "number of seeds", lower_bound=1)
flags.DEFINE_integer("steps", 10_000, "optimization steps (mnist, wine)", lower_bound=1)
flags.DEFINE_integer("control_steps", 10_000, "optimization steps (control)", lower_bound=1)
flags.DEFINE_integer("table_every", 1000, "step-table interval in steps", lower_bound=1)
flags.DEFINE_integer("checkpoint_every", 10_000, "checkpoint interval in steps", lower_bound=1)
flags.DEFINE_integer("n_train", 1000, "MNIST training images", lower_bound=1)
flags.DEFINE_enum("wine_color", "red", ["red", "white", "both"], "Wine Quality colour")
flags.DEFINE_integer("separable_dim", 20, "separable control task's input size", lower_bound=1)
flags.DEFINE_float("separable_margin", 1.0, "class margin of the separable control task")
flags.DEFINE_float("gen_acc", 0.98, "control: validation accuracy that counts as generalized")
flags.DEFINE_float("fit_acc", 0.99, "control: training accuracy that counts as fitted")
flags.DEFINE_enum("weight_init", "torch", ["torch", "default"], "layer init before alpha")
flags.DEFINE_list("control_alphas", None, "control: alphas (default: 1 and --alpha)")
flags.DEFINE_string("out", "results/mnist_variants", "output folder")
flags.DEFINE_bool("resume", False, "continue the variants in --out from their checkpoints")

PARTS = ("mnist", "wine", "control")
#: control variant -> the study variant it is
CONTROL_VARIANTS = {"mse_linear": "baseline", "cross_entropy": "cross_entropy"}


def train(dataset, names: dict, alphas, steps: int, out: str):
    """Train {variant: study variant name} on `dataset` at these alphas and steps."""
    from jgrok import presets, rundir

    base = presets.omnigrok_preset(steps, weight_init=FLAGS.weight_init, setup=FLAGS.setup)
    base = dataclasses.replace(
        base, train=dataclasses.replace(base.train, checkpoint_every=FLAGS.checkpoint_every),
        sweep=dataclasses.replace(base.sweep, seeds=tuple(range(FLAGS.seeds)),
                                  init_scales=tuple(alphas)))
    cfgs = {v: presets.study_variant(base, s) for v, s in names.items()}
    schedule = set(presets.omnigrok_eval_steps(steps)) | set(range(0, steps + 1,
                                                                   FLAGS.table_every))
    coords = {v: dict(task=dataset.name, variant=v,
                      **dict(zip(("loss", "hidden", "output"), presets.STUDY_VARIANTS[s])))
              for v, s in names.items()}
    return rundir.run_variants(cfgs, dataset, out, resume=FLAGS.resume,
                               eval_steps=sorted(schedule), coords=coords)


def report(df, out: str, steps: int, title: str, keys, panel_keys, extra_md: str = ""):
    from jgrok import metrics as mio
    from jgrok import plots_norm

    summary, md = plots_norm.variants_report(df, keys, range(0, steps + 1, FLAGS.table_every),
                                             title, extra_md)
    mio.write_csv(summary, os.path.join(out, "summary.csv"))
    mio.write_text(md, os.path.join(out, "tables.md"))
    plots_norm.plot_acc_norm(df, os.path.join(out, "acc_norm"), panel_keys=panel_keys,
                             line_keys=["init_scale"], ncols=min(len(panel_keys) + 1, 3),
                             title=f"{title}: median over {FLAGS.seeds} seed(s)")
    print(mio.markdown_table(summary, missing="-") + "\n" + extra_md, flush=True)


def part_variants(dataset, out: str):
    df = train(dataset, {v: v for v in FLAGS.variants}, (FLAGS.alpha,), FLAGS.steps, out)
    report(df, out, FLAGS.steps, f"{dataset.name}: output/loss variants, alpha="
           f"{FLAGS.alpha:g}", ["variant", "init_scale"], ["variant"])


def part_control(tasks, out: str):
    from jgrok import metrics as mio
    from jgrok import rundir
    from jgrok.analysis.phases import PhaseThresholds, classify_table

    alphas = tuple(sorted(set(cli.parse_floats(FLAGS.control_alphas, "control_alphas")
                              if FLAGS.control_alphas else (1.0, FLAGS.alpha))))
    df = rundir.concat_variants([train(ds, CONTROL_VARIANTS, alphas, FLAGS.control_steps,
                                       os.path.join(out, ds.name)) for ds in tasks],
                                by=("task", "variant"))
    th = PhaseThresholds(fit_acc=FLAGS.fit_acc, gen_acc=FLAGS.gen_acc)
    phases = classify_table(df, th)[["task", "variant", "init_scale", "seed", "phase",
                                     "fit_step", "gen_step", "delay", "delay_ratio",
                                     "val_acc_at_fit", "plateau", "final_train_acc",
                                     "final_val_acc"]]
    mio.write_csv(phases, os.path.join(out, "phases.csv"))
    mio.write_csv(df, os.path.join(out, "metrics.csv"))
    md = (f"\n## Phase classification ({th.describe()}; delay = gen_step - fit_step)\n\n"
          + mio.markdown_table(phases, missing="-") + "\n")
    report(df, out, FLAGS.control_steps, "Control: linear output + MSE + large alpha on easily "
           "generalizable tasks", ["task", "variant", "init_scale"], ["task", "variant"], md)


def main(argv):
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    parts = [p.strip() for p in FLAGS.parts if p.strip()]
    from jgrok import presets
    from jgrok.data.omnigrok import mnist_dataset, separable_dataset, wine_dataset

    unknown = [p for p in parts if p not in PARTS] + [
        v for v in FLAGS.variants if v not in presets.STUDY_VARIANTS]
    if unknown:
        raise ConfigError(f"unknown parts or variants {unknown}; parts: {', '.join(PARTS)}; "
                          f"variants: {', '.join(presets.STUDY_VARIANTS)}")
    if not FLAGS.data_dir and {"mnist", "control"} & set(parts) or not FLAGS.wine_dir and \
            "wine" in parts:
        raise ConfigError("--data_dir is required for parts mnist/control, --wine_dir for wine")
    data = {}  # every data set first: a missing file fails before any training
    if "mnist" in parts:
        data["mnist"] = mnist_dataset(FLAGS.data_dir, n_train=FLAGS.n_train)
    if "wine" in parts:
        data["wine"] = wine_dataset(FLAGS.wine_dir, FLAGS.wine_color)
    if "control" in parts:
        data["control"] = [mnist_dataset(FLAGS.data_dir, n_train=FLAGS.n_train, classes=(0, 1)),
                           separable_dataset(n=FLAGS.n_train, dim=FLAGS.separable_dim, seed=0,
                                             margin=FLAGS.separable_margin)]
    for part in parts:
        t0 = time.perf_counter()
        run = part_control if part == "control" else part_variants
        run(data[part], os.path.join(FLAGS.out, part))
        print(f"part {part} done in {time.perf_counter() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    cli.run_main(main)

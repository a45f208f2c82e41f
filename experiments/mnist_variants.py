"""The course study's output-layer and loss variants of Omnigrok's MNIST set-up
(`jgrok.presets.STUDY_VARIANTS`), on MNIST and Wine Quality, and the control for the claim
"the grokking delay is caused by a linear output trained with MSE from a large init".

    python experiments/mnist_variants.py --data_dir=/path/to/mnist --wine_dir=/path/to/wine \
        --steps=10000 --seeds=2 --out=results/mnist_variants

From the preset `omnigrok_script` (alpha 7, 1 seed, 10000 steps); config flags override it.
Parts: ``mnist`` (784-200-200-10 MLP at alpha ``--init_scales``, 1000 training / 10k test
images), ``wine`` (``--wine_color``), both over ``--variants``, and ``control`` (MSE + linear
output vs CE at alpha 1 and ``--init_scales`` on MNIST 0-vs-1 and a separable task,
``--control_steps`` steps, phases with ``--gen_acc`` 0.98 unless given). Each variant is a
run directory <out>/<part>/[<task>/]<variant>/ (`--resume`); per part: metrics.csv, tables.md
(step x accuracy x norm), summary.csv, acc_norm.png/.pdf; control: phases.csv and
phase_rule.json."""

from __future__ import annotations

import dataclasses
import os
import time

import mnist_flags  # noqa: F401  (--data_dir, --n_train)
from absl import flags
from common_flags import FLAGS, config_from_flags, memory_limit, refuse_given, variants_from_flag
from phase_flags import thresholds_from_flags

from jgrok import cli
from jgrok.errors import ConfigError
from jgrok.presets import STUDY_VARIANTS

flags.DEFINE_string("wine_dir", "", "folder with the Wine Quality CSVs (part wine)")
flags.DEFINE_list("parts", ["mnist", "wine", "control"], "which parts to run")
flags.DEFINE_integer("control_steps", 10_000, "optimization steps of part control (--steps: "
                     "parts mnist and wine)", lower_bound=1)
flags.DEFINE_integer("table_every", 1000, "step-table interval in steps", lower_bound=1)
flags.DEFINE_enum("wine_color", "red", ["red", "white", "both"], "Wine Quality colour")
flags.DEFINE_integer("separable_dim", 20, "separable control task's input size", lower_bound=1)
flags.DEFINE_float("separable_margin", 1.0, "class margin of the separable control task")
flags.DEFINE_list("control_alphas", None, "control: alphas (default: 1 and --init_scales)")

FLAGS.set_default("preset", "omnigrok_script")
FLAGS.set_default("out", "results/mnist_variants")
FLAGS.set_default("variants", list(STUDY_VARIANTS))
FLAGS.set_default("gen_acc", 0.98)  # control: validation accuracy that counts as generalized

PARTS = ("mnist", "wine", "control")
#: control variant -> the study variant it is
CONTROL_VARIANTS = {"mse_linear": "baseline", "cross_entropy": "cross_entropy"}


def train(base, dataset, names: dict, alphas, steps: int, out: str):
    """Train {variant: study variant name} on `dataset` from `base` at these alphas, steps."""
    from jgrok import presets, rundir

    base = dataclasses.replace(
        base, train=dataclasses.replace(base.train, steps=steps),
        sweep=dataclasses.replace(base.sweep, init_scales=tuple(alphas)))
    cfgs = {v: presets.study_variant(base, s) for v, s in names.items()}  # validated in training
    schedule = set(presets.omnigrok_eval_steps(steps)) | set(range(0, steps + 1,
                                                                   FLAGS.table_every))
    coords = {v: dict(task=dataset.name, variant=v,
                      **dict(zip(("loss", "hidden", "output"), presets.STUDY_VARIANTS[s])))
              for v, s in names.items()}
    return rundir.run_variants(cfgs, dataset, out, resume=FLAGS.resume,
                               eval_steps=sorted(schedule), coords=coords,
                               memory_limit=memory_limit(), tensorboard=FLAGS.tensorboard)


def report(df, out: str, steps: int, title: str, keys, panel_keys, extra_md: str = ""):
    from jgrok import figures, tables
    from jgrok.analysis.summary import variants_report

    summary, md = variants_report(df, keys, range(0, steps + 1, FLAGS.table_every),
                                             title, extra_md)
    tables.write_csv(summary, os.path.join(out, "summary.csv"))
    tables.write_text(md, os.path.join(out, "tables.md"))
    figures.plot_acc_norm(df, os.path.join(out, "acc_norm"), panel_keys=panel_keys,
                          line_keys=["init_scale"], ncols=min(len(panel_keys) + 1, 3),
                          title=f"{title}: median over {df['seed'].nunique()} seed(s)")
    print(tables.markdown_table(summary, missing="-") + "\n" + extra_md, flush=True)


def part_variants(base, dataset, out: str):
    names = variants_from_flag(STUDY_VARIANTS)
    df = train(base, dataset, {v: v for v in names}, base.sweep.init_scales, base.train.steps,
               out)
    alphas = ",".join(f"{a:g}" for a in base.sweep.init_scales)
    report(df, out, base.train.steps, f"{dataset.name}: output/loss variants, alpha={alphas}",
           ["variant", "init_scale"], ["variant"])


def part_control(base, tasks, out: str):
    from jgrok import rundir, tables
    from jgrok.analysis.phases import classify_table, write_phase_rule

    alphas = tuple(sorted(set(cli.parse_floats(FLAGS.control_alphas, "control_alphas")
                              if FLAGS.control_alphas else (1.0, *base.sweep.init_scales))))
    df = rundir.concat_variants([train(base, ds, CONTROL_VARIANTS, alphas, FLAGS.control_steps,
                                       os.path.join(out, ds.name)) for ds in tasks],
                                by=("task", "variant"))
    th = thresholds_from_flags()
    phases = classify_table(df, th)[["task", "variant", "init_scale", "seed", "phase", "fit_step",
                                     "gen_step", "delay", "delay_ratio", "val_acc_at_fit",
                                     "plateau", "final_train_acc", "final_val_acc"]]
    tables.write_csv(phases, os.path.join(out, "phases.csv"))
    write_phase_rule(th, out)  # the thresholds of these labels (gen_acc 0.98 by default)
    tables.write_csv(df, os.path.join(out, "metrics.csv"))
    md = (f"\n## Phase classification ({th.describe()}; delay = gen_step - fit_step)\n\n"
          + tables.markdown_table(phases, missing="-") + "\n")
    report(df, out, FLAGS.control_steps, "Control: linear output + MSE + large alpha on easily "
           "generalizable tasks", ["task", "variant", "init_scale"], ["task", "variant"], md)


def main(argv):
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    parts = [p.strip() for p in FLAGS.parts if p.strip()]
    refuse_given("coordinator", "figures", "loss", "mlp_activation", "output_activation",
                 why="mnist_variants.py runs in one process, always writes its tables and "
                 f"figures, and --variants ({', '.join(STUDY_VARIANTS)}) set the loss and layers")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ConfigError(f"unknown parts {unknown}; parts: {', '.join(PARTS)}")
    variants_from_flag(STUDY_VARIANTS)  # checked before anything is loaded
    base = config_from_flags()
    from jgrok.data.omnigrok import mnist_dataset, separable_dataset, wine_dataset

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
    cli.enable_compilation_cache(FLAGS.compilation_cache)
    for part in parts:
        t0 = time.perf_counter()
        run = part_control if part == "control" else part_variants
        run(base, data[part], os.path.join(FLAGS.out, part))
        print(f"part {part} done in {time.perf_counter() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    cli.run_main(main)

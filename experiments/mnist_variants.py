"""Output-layer and loss variants of Omnigrok's MNIST set-up, on MNIST and Wine Quality, and
the control that tests the claim "the grokking delay is caused by a linear output trained with
MSE from a large initialisation".

    python experiments/mnist_variants.py --data_dir=/path/to/mnist --wine_dir=/path/to/wine \
        --steps=10000 --seeds=2 --out=results/mnist_variants

Parts (``--parts``):

* ``mnist``: five variants of the Omnigrok model (784-200-200-10, alpha = ``--alpha``, AdamW
  lr 1e-3 wd 0.1, batch 256, first 1000 training images, 10k test images):
  ``baseline`` (ReLU hidden, linear output, MSE vs one-hot), ``sigmoid_hidden`` (sigmoid hidden
  activations), ``sigmoid_output`` (sigmoid on the outputs, MSE), ``softmax_output`` (softmax on
  the outputs, MSE), ``cross_entropy`` (linear output, CE).
* ``wine``: the same five variants on UCI Wine Quality (red; 80/20 split, standardised).
* ``control``: linear output + MSE vs cross-entropy, each at alpha 1 and ``--alpha``, on tasks
  where generalization is easy: MNIST digits 0 vs 1 and a linearly separable Gaussian task.
  Every run is classified with `jgrok.analysis.phases.classify_table` (fit step, gen step,
  delay).

Each variant is one vmapped sweep over seeds (x alphas for the control). Evaluations at powers
of two and every ``--table_every`` steps. Writes per part <out>/<part>/metrics.csv,
tables.md (Markdown: summary and per-variant checkpoint tables), acc_norm.png/.pdf (accuracy
on log steps, weight norm on the right axis) and, for the control, phases.csv.
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
flags.DEFINE_string("data_dir", "", "folder with the four MNIST IDX files (parts mnist, control)")
flags.DEFINE_string("wine_dir", "", "folder with winequality-red.csv (part wine)")
flags.DEFINE_list("parts", ["mnist", "wine", "control"], "which parts to run")
flags.DEFINE_list("variants", ["baseline", "sigmoid_hidden", "sigmoid_output",
                               "softmax_output", "cross_entropy"], "variants (mnist, wine)")
flags.DEFINE_float("alpha", 7.0, "initialisation scale of the variants (Omnigrok: 7)")
flags.DEFINE_integer("seeds", 2, "number of seeds")
flags.DEFINE_integer("steps", 10_000, "optimization steps (mnist, wine)")
flags.DEFINE_integer("control_steps", 10_000, "optimization steps (control)")
flags.DEFINE_integer("table_every", 1000, "checkpoint-table interval in steps")
flags.DEFINE_integer("n_train", 1000, "MNIST training images")
flags.DEFINE_string("wine_color", "red", "red | white | both")
flags.DEFINE_integer("separable_dim", 20, "input dimension of the separable control task")
flags.DEFINE_float("separable_margin", 1.0, "class margin of the separable control task")
flags.DEFINE_float("gen_acc", 0.98, "control: validation accuracy that counts as generalized")
flags.DEFINE_float("fit_acc", 0.99, "control: training accuracy that counts as fitted")
flags.DEFINE_string("weight_init", "torch", "layer init before the alpha scaling: torch (nn.Linear's, "
                    "as Omnigrok's script) or default (Flax's, sqrt(3) x the norm)")
flags.DEFINE_string("out", "results/mnist_variants", "output folder")

#: variant -> (loss, hidden activation, output activation)
VARIANTS = {
    "baseline": ("mse", "relu", "none"),
    "sigmoid_hidden": ("mse", "sigmoid", "none"),
    "sigmoid_output": ("mse", "relu", "sigmoid"),
    "softmax_output": ("mse", "relu", "softmax"),
    "cross_entropy": ("ce", "relu", "none"),
}
CONTROL_VARIANTS = {"mse_linear": ("mse", "relu", "none"), "cross_entropy": ("ce", "relu", "none")}
PARTS = ("mnist", "wine", "control")


def variant_config(base, loss: str, activation: str, output: str, alphas, steps: int):
    return dataclasses.replace(
        base,
        model=dataclasses.replace(base.model, mlp_activation=activation,
                                  output_activation=output),
        train=dataclasses.replace(base.train, loss=loss, steps=steps, checkpoint_every=steps),
        sweep=dataclasses.replace(base.sweep, seeds=tuple(range(FLAGS.seeds)),
                                  init_scales=tuple(alphas)))


def eval_steps(steps: int):
    from jgrok.data.omnigrok import omnigrok_eval_steps

    return sorted(set(omnigrok_eval_steps(steps)) | set(range(0, steps + 1, FLAGS.table_every)))


def run_variants(dataset, variants: dict, alphas, steps: int, out: str, log):
    """Train each variant (one vmapped sweep each) and return the concatenated table."""
    import pandas as pd

    from jgrok import metrics as mio
    from jgrok.data.omnigrok import omnigrok_preset, train_variant

    base = omnigrok_preset(steps, weight_init=FLAGS.weight_init)
    frames, wall = [], {}
    for name, (loss, act, outact) in variants.items():
        cfg = variant_config(base, loss, act, outact, alphas, steps)
        cfg.validate()
        mio.write_json(dict(config=cfg.to_dict(), dataset=dataset.name,
                            versions=mio.versions()), os.path.join(out, "configs", f"{name}.json"))
        log(f"[{dataset.name}] variant {name}: loss {loss}, hidden {act}, output {outact}, "
            f"alphas {list(alphas)}, {FLAGS.seeds} seed(s), {steps} steps")
        t0 = time.perf_counter()
        df = train_variant(cfg, dataset, eval_steps(steps),
                           coords=dict(task=dataset.name, variant=name, loss=loss,
                                       hidden=act, output=outact), log=log)
        wall[(dataset.name, name)] = time.perf_counter() - t0
        log(f"[{dataset.name}] variant {name} done in {wall[(dataset.name, name)]:.0f}s")
        frames.append(df)
        mio.write_csv(pd.concat(frames, ignore_index=True), os.path.join(out, "metrics.csv"))
    df = pd.concat(frames, ignore_index=True)
    df["run"] = df.groupby(["task", "variant", "run"], sort=False).ngroup()
    return df, wall


def write_tables(df, wall, out: str, steps: int, title: str, keys, extra_md: str = ""):
    import pandas as pd

    from jgrok import metrics as mio
    from jgrok import plots_norm

    mio.write_csv(df, os.path.join(out, "metrics.csv"))
    summary = plots_norm.summary_table(df, keys)
    tasks = summary["task"] if "task" in summary else df["task"].iloc[0]
    summary["wall_s"] = [round(wall.get((t, v), float("nan"))) for t, v in
                         zip(pd.Series(tasks, index=summary.index), summary["variant"])]
    mio.write_csv(summary, os.path.join(out, "summary.csv"))
    parts = [f"# {title}\n", "## Summary (mean over seeds; val_settle_step: median step at "
             "which val accuracy first comes within 0.01 of its final value)\n",
             mio.markdown_table(summary, missing="-") + "\n", extra_md]
    table_steps = list(range(0, steps + 1, FLAGS.table_every))
    for k, g in df.groupby(keys, sort=False):
        k = k if isinstance(k, tuple) else (k,)
        label = ", ".join(f"{a}={plots_norm._fmt(b)}" for a, b in zip(keys, k))
        parts.append(f"\n## {label} (mean over {g['run'].nunique()} run(s))\n")
        parts.append(mio.markdown_table(plots_norm.checkpoint_table(g, table_steps),
                                        missing="-") + "\n")
    text = "\n".join(parts)
    mio.write_text(text, os.path.join(out, "tables.md"))
    return summary, text


def part_variants(name: str, dataset, out: str, log):
    from jgrok import metrics as mio
    from jgrok import plots_norm

    chosen = {v: VARIANTS[v] for v in FLAGS.variants}
    df, wall = run_variants(dataset, chosen, (FLAGS.alpha,), FLAGS.steps, out, log)
    summary, _ = write_tables(df, wall, out, FLAGS.steps,
                              f"{dataset.name}: output/loss variants, alpha={FLAGS.alpha:g}",
                              ["variant", "init_scale"])
    plots_norm.plot_acc_norm(df, os.path.join(out, "acc_norm"), panel_keys=["variant"],
                             title=f"{dataset.name}, alpha={FLAGS.alpha:g}: median over "
                                   f"{FLAGS.seeds} seed(s)")
    log(mio.markdown_table(summary, missing="-") + "\n")


def part_control(mnist_dir: str, out: str, log):
    import pandas as pd

    from jgrok import metrics as mio
    from jgrok import plots_norm
    from jgrok.analysis.phases import PhaseThresholds, classify_table
    from jgrok.data.omnigrok import mnist_dataset, separable_dataset

    tasks = [mnist_dataset(mnist_dir, n_train=FLAGS.n_train, classes=(0, 1)),
             separable_dataset(n=FLAGS.n_train, dim=FLAGS.separable_dim, seed=0,
                               margin=FLAGS.separable_margin)]
    alphas = tuple(sorted({1.0, float(FLAGS.alpha)}))
    frames, wall = [], {}
    for ds in tasks:
        df, w = run_variants(ds, CONTROL_VARIANTS, alphas, FLAGS.control_steps, out, log)
        frames.append(df)
        wall.update(w)
    df = pd.concat(frames, ignore_index=True)
    df["run"] = df.groupby(["task", "variant", "run"], sort=False).ngroup()
    th = PhaseThresholds(fit_acc=FLAGS.fit_acc, gen_acc=FLAGS.gen_acc)
    phases = classify_table(df, th)
    cols = ["task", "variant", "init_scale", "seed", "phase", "fit_step", "gen_step", "delay",
            "delay_ratio", "val_acc_at_fit", "plateau", "final_train_acc", "final_val_acc"]
    phases = phases[cols]
    mio.write_csv(phases, os.path.join(out, "phases.csv"))
    md = (f"\n## Phase classification ({th.describe()}; delay = gen_step - fit_step)\n\n"
          + mio.markdown_table(phases, missing="-") + "\n")
    write_tables(df, wall, out, FLAGS.control_steps,
                 "Control: linear output + MSE + large alpha on easily generalizable tasks",
                 ["task", "variant", "init_scale"], extra_md=md)
    plots_norm.plot_acc_norm(df, os.path.join(out, "acc_norm"), panel_keys=["task", "variant"],
                             line_keys=["init_scale"], ncols=2,
                             title=f"control tasks: median over {FLAGS.seeds} seed(s)")
    log(md)


def main(argv):
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    parts = [p.strip() for p in FLAGS.parts if p.strip()]
    for p in parts:
        if p not in PARTS:
            raise ConfigError(f"--parts: unknown part {p!r}; known: {', '.join(PARTS)}")
    for v in FLAGS.variants:
        if v not in VARIANTS:
            raise ConfigError(f"--variants: unknown variant {v!r}; known: {', '.join(VARIANTS)}")
    for name in ("seeds", "steps", "control_steps", "table_every", "n_train"):
        if getattr(FLAGS, name) < 1:
            raise ConfigError(f"--{name}={getattr(FLAGS, name)} must be >= 1")
    if not (FLAGS.alpha > 0):
        raise ConfigError(f"--alpha={FLAGS.alpha} must be > 0")
    if ("mnist" in parts or "control" in parts) and not FLAGS.data_dir:
        raise ConfigError("--data_dir is required for parts mnist and control: a folder with "
                          "the four MNIST IDX files")
    if "wine" in parts and not FLAGS.wine_dir:
        raise ConfigError("--wine_dir is required for part wine: a folder with "
                          "winequality-red.csv")
    from jgrok.data.omnigrok import mnist_dataset, wine_dataset

    # load every data set first: a missing file fails before any training
    mnist = mnist_dataset(FLAGS.data_dir, n_train=FLAGS.n_train) if "mnist" in parts else None
    if "control" in parts and mnist is None:
        mnist_dataset(FLAGS.data_dir, n_train=FLAGS.n_train, classes=(0, 1))
    wine = wine_dataset(FLAGS.wine_dir, FLAGS.wine_color) if "wine" in parts else None

    import jax

    def log(s):
        print(s, flush=True)

    log(f"backend {jax.default_backend()}, {jax.device_count()} device(s); parts {parts}")
    t0 = time.perf_counter()
    for part in parts:
        out = os.path.join(FLAGS.out, part)
        os.makedirs(out, exist_ok=True)
        tp = time.perf_counter()
        if part == "mnist":
            part_variants(part, mnist, out, log)
        elif part == "wine":
            part_variants(part, wine, out, log)
        else:
            part_control(FLAGS.data_dir, out, log)
        log(f"part {part} done in {time.perf_counter() - tp:.0f}s")
    log(f"total wall time {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    cli.run_main(main)

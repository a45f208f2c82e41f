"""Redraw the analysis tables and figures of a finished or partly finished run directory.

    python experiments/plot.py --run=runs/x2_plus_y2-20261122-101500
"""

from __future__ import annotations

import os
import sys

from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jgrok import cli  # noqa: E402
from jgrok.errors import ConfigError  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("run", "", "run directory holding metrics.csv")
flags.DEFINE_enum("rule", "plateau", ["plateau", "liu"], "phase rule (jgrok.analysis.phases)")
flags.DEFINE_float("fit_acc", 0.99, "plateau rule: train accuracy that counts as fitted")
flags.DEFINE_float("gen_acc", 0.99, "plateau rule: validation accuracy that counts as generalized")
flags.DEFINE_float("plateau_factor", 5.0, "plateau rule: val acc stays below half-way until "
                   "this many times the fit step")
flags.DEFINE_float("delay_factor", 10.0, "plateau rule: grokking generalizes at >= this many "
                   "times the fit step")


def main(argv):
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.run:
        raise ConfigError("--run is required (a run directory holding metrics.csv)")
    from jgrok import metrics, plots
    from jgrok.analysis.phases import PhaseThresholds

    df = metrics.read_metrics(os.path.join(FLAGS.run, "metrics.csv"))
    th = PhaseThresholds(rule=FLAGS.rule, fit_acc=FLAGS.fit_acc, gen_acc=FLAGS.gen_acc,
                         plateau_factor=FLAGS.plateau_factor, delay_factor=FLAGS.delay_factor)
    paths = plots.write_all_figures(df, FLAGS.run, thresholds=th)
    print(f"{len(df)} metric rows, {df.run.nunique()} runs, last step {df.step.max()}")
    for p in paths:
        print(p)


if __name__ == "__main__":
    cli.run_main(main)

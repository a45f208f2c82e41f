"""Redraw the analysis tables and figures of a finished or partly finished run directory.

    python experiments/plot.py --run=runs/x2_plus_y2-20261122-101500
"""

from __future__ import annotations

import os

from absl import flags


from jgrok import cli
from jgrok.analysis.phases import RULES, PhaseThresholds
from jgrok.errors import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_string("run", "", "run directory holding metrics.csv")
_DEFAULT = PhaseThresholds()
flags.DEFINE_enum("rule", _DEFAULT.rule, list(RULES), "phase rule (jgrok.analysis.phases)")
flags.DEFINE_float("fit_acc", _DEFAULT.fit_acc, "plateau rule: train accuracy that counts as "
                   "fitted")
flags.DEFINE_float("gen_acc", _DEFAULT.gen_acc, "plateau rule: validation accuracy that counts "
                   "as generalized")
flags.DEFINE_float("plateau_factor", _DEFAULT.plateau_factor, "plateau rule: val acc stays below "
                   "half-way until this many times the fit step")
flags.DEFINE_float("delay_factor", _DEFAULT.delay_factor, "plateau rule: grokking generalizes "
                   "at >= this many times the fit step")


def main(argv):
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.run:
        raise ConfigError("--run is required (a run directory holding metrics.csv)")
    from jgrok import figures, tables

    df = tables.read_metrics(os.path.join(FLAGS.run, "metrics.csv"))
    th = PhaseThresholds(rule=FLAGS.rule, fit_acc=FLAGS.fit_acc, gen_acc=FLAGS.gen_acc,
                         plateau_factor=FLAGS.plateau_factor, delay_factor=FLAGS.delay_factor)
    paths = figures.write_all_figures(df, FLAGS.run, thresholds=th)
    print(f"{len(df)} metric rows, {df.run.nunique()} runs, last step {df.step.max()}")
    for p in paths:
        print(p)


if __name__ == "__main__":
    cli.run_main(main)

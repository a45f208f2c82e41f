"""Redraw the analysis tables and figures of a finished or partly finished run directory.

    python experiments/plot.py --run=runs/x2_plus_y2-20261122-101500
"""

from __future__ import annotations

import os

from absl import flags
from phase_flags import thresholds_from_flags

from jgrok import cli
from jgrok.errors import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_string("run", "", "run directory holding metrics.csv")


def main(argv):
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.run:
        raise ConfigError("--run is required (a run directory holding metrics.csv)")
    from jgrok import analysis, figures, schema

    df = schema.read_metrics(os.path.join(FLAGS.run, "metrics.csv"))
    rep = analysis.report(df, FLAGS.run, thresholds=thresholds_from_flags())
    paths = [*rep.paths, *figures.draw_report(rep, FLAGS.run)]
    print(f"{len(df)} metric rows, {df.run.nunique()} runs, last step {df.step.max()}")
    for p in paths:
        print(p)


if __name__ == "__main__":
    cli.run_main(main)

"""Our Omnigrok/study runs beside the course study's tables (shared/reference/study_tables.csv):
step x train/test accuracy x weight norm, our seed means next to the study's numbers.

    python experiments/compare_study.py --runs=results/study_long/mnist \
        --study_tables=../shared/reference/study_tables.csv

`--runs` are folders holding a metrics.csv with task and variant columns (written by
mnist_variants.py). Writes <first run folder>/study_comparison.csv and .md (or --out).
"""

from __future__ import annotations

import os

from absl import flags

from jgrok import cli
from jgrok.errors import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_list("runs", [], "folders holding metrics.csv (mnist_variants.py parts)")
flags.DEFINE_string("study_tables", "", "the study's tables (shared/reference/study_tables.csv)")
flags.DEFINE_string("comparison_out", "", "output stem (default <first run>/study_comparison)")


def main(argv):
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.runs or not FLAGS.study_tables:
        raise ConfigError("--runs and --study_tables are required")
    import pandas as pd

    from jgrok import tables
    from jgrok.analysis import reference

    ref = reference.read_study_tables(FLAGS.study_tables)
    frames = [tables.read_metrics(os.path.join(run, "metrics.csv")) for run in FLAGS.runs]
    table = reference.compare_with_study(pd.concat(frames, ignore_index=True), ref)
    stem = FLAGS.comparison_out or os.path.join(FLAGS.runs[0], "study_comparison")
    tables.write_csv(table, stem + ".csv")
    md = reference.comparison_markdown(table)
    tables.write_text(md, stem + ".md")
    print(md + f"wrote {stem}.csv and .md")


if __name__ == "__main__":
    cli.run_main(main)

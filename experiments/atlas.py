"""Write the generated blocks of the READMEs from the committed result tables
(`jgrok.analysis.atlas`): the atlas table that opens results/README.md and every
`<!-- generated:KIND ... -->` block of the Markdown files.

    python experiments/atlas.py            # rewrite the blocks of every file that has some
    python experiments/atlas.py --check    # exit 1 and name the files that are out of date
"""

from __future__ import annotations

import os
import sys

from absl import flags

from jgrok import cli
from jgrok.errors import ConfigError

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("results", os.path.join(ROOT, "results"), "the results folder")
flags.DEFINE_bool("check", False, "write nothing; exit 1 if a file's blocks are out of date")


def main(argv):
    from jgrok.analysis import atlas

    files = argv[1:] or atlas.generated_files(ROOT)
    if not files:
        raise ConfigError("no Markdown file with generated blocks")
    stale = [f for f in files if atlas.update_file(f, FLAGS.results, write=not FLAGS.check)]
    for f in stale:
        print(f"{'out of date' if FLAGS.check else 'rewrote'}: {os.path.relpath(f)}")
    if FLAGS.check and stale:
        sys.exit(1)


if __name__ == "__main__":
    cli.run_main(main)

"""Which operations generalize within the budget? One vmapped sweep per operation at fixed
training fraction(s), then a table of phases per operation.

    python experiments/op_survey.py --ops=add,sub,mul,div,x3_plus_xy,div_odd_sub_even,\
group:dihedral_d10 --p=23 --fractions=0.5 --seeds=3 --out=runs/ops

Writes <out>/<op>/ (a full run directory per operation, as phase_diagram.py), and
<out>/op_phases.csv and <out>/op_phases.md (one row per operation and fraction).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import flags  # noqa: E402
from common_flags import FLAGS, config_from_flags  # noqa: E402

from jgrok import cli  # noqa: E402
from jgrok.errors import ConfigError  # noqa: E402

flags.DEFINE_list("ops", ["add", "sub", "mul", "div", "x3_plus_xy", "div_odd_sub_even",
                          "group:dihedral_d10"], "operations to survey")


def main(argv):
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.out:
        raise ConfigError("--out is required (a folder for one run directory per operation)")
    base = config_from_flags()
    from jgrok.data.algorithmic import make_task
    from jgrok.data.split import dataset_from_task

    tasks = {op: make_task(op, base.task.p) for op in FLAGS.ops}  # all input errors up front

    import pandas as pd

    from jgrok import metrics, plots, rundir

    rows = []
    for op, task in tasks.items():
        cfg = dataclasses.replace(base, task=dataclasses.replace(base.task, op=op))
        out = os.path.join(FLAGS.out, op.replace("group:", "group_").replace("/", "_"))
        t0 = time.perf_counter()
        df = rundir.run_sweep(cfg, dataset_from_task(task), out, resume=FLAGS.resume,
                              extra_config=dict(task_name=task.name))
        plots.write_all_figures(df, out)
        ph = pd.read_csv(os.path.join(out, "phases.csv"))
        wall = time.perf_counter() - t0
        for frac, g in ph.groupby("fraction"):
            counts = g.phase.value_counts()
            rows.append(dict(op=op, task=task.name, equations=len(task.targets), fraction=frac,
                             seeds=len(g), majority_phase=counts.idxmax(),
                             phases=", ".join(f"{k} {v}" for k, v in counts.items()),
                             median_fit_step=g.fit_step.median(),
                             median_gen_step=g.gen_step.median(),
                             final_val_acc_median=round(g.final_val_acc.median(), 4),
                             wall_s=round(wall, 1)))
        print(f"{op}: {rows[-1]['phases']}  ({wall:.0f}s)", flush=True)
    table = pd.DataFrame(rows)
    metrics.write_csv(table, os.path.join(FLAGS.out, "op_phases.csv"))
    md = metrics.markdown_table(table.drop(columns=["task"]))
    metrics.write_text(md + "\n", os.path.join(FLAGS.out, "op_phases.md"))
    print(md)


if __name__ == "__main__":
    cli.run_main(main)

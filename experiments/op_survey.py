"""Which operations generalize at which training fraction? One vmapped, resumable sweep per
operation, then the thesis's Figure 4.2 form: a heatmap of the phase per (operation, training
fraction), mixed cells split by their seeds' phases.

    python experiments/op_survey.py --preset=cpu_grok --ops=add,sub,mul,div,x2_plus_y2,\
x3_plus_xy,div_odd_sub_even,group:dihedral_d10 --fractions=0.3:0.9:7 --seeds=3 --out=runs/ops

Writes <out>/<op>/ (a full run directory per operation, as phase_diagram.py), <out>/op_cells.csv
(one row per operation and fraction), <out>/op_phases.md and <out>/op_phase_diagram.png/.pdf.
`--analysis_only` redoes the tables and figures from the metrics.csv files already in <out>.
"""

from __future__ import annotations

import dataclasses
import os
import time


from absl import flags
from common_flags import FLAGS, config_from_flags, memory_limit, refuse_given

from jgrok import cli
from jgrok.errors import ConfigError

flags.DEFINE_list("ops", ["add", "sub", "mul", "div", "x3_plus_xy", "div_odd_sub_even",
                          "group:dihedral_d10"], "operations to survey")
flags.DEFINE_bool("analysis_only", False, "train nothing: redo the tables and figures from the "
                  "metrics.csv of each operation already in --out")


def op_dir(out: str, op: str) -> str:
    return os.path.join(out, op.replace("group:", "group_").replace("/", "_"))


def main(argv):
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.out:
        raise ConfigError("--out is required (a folder for one run directory per operation)")
    refuse_given("variants", "coordinator", "figures", why="op_survey.py trains one sweep per "
                 "operation (--ops) in one process and always writes its tables and figures")
    base = config_from_flags()
    from jgrok.data.algorithmic import make_task
    from jgrok.data.split import dataset_from_task

    tasks = {op: make_task(op, base.task.p) for op in FLAGS.ops}  # all input errors up front

    import pandas as pd

    from jgrok import analysis, figures, rundir, schema, tables
    from jgrok.analysis.phases import PHASE_LETTERS, PhaseThresholds, aggregate_cells

    frames, walls = [], {}
    for op, task in tasks.items():
        out = op_dir(FLAGS.out, op)
        t0 = time.perf_counter()
        if FLAGS.analysis_only:
            df = schema.read_metrics(os.path.join(out, "metrics.csv"))
        else:
            cfg = dataclasses.replace(base, task=dataclasses.replace(base.task, op=op))
            df = rundir.run_sweep(cfg, dataset_from_task(task), out, resume=FLAGS.resume,
                                  extra_config=dict(task_name=task.name),
                                  tensorboard=FLAGS.tensorboard, memory_limit=memory_limit())
        rep = analysis.report(df, out)
        figures.draw_report(rep, out)
        walls[op] = time.perf_counter() - t0
        ph = rep.runs.copy()
        ph.insert(1, "op", op)
        frames.append(ph)
        print(f"{op}: {' '.join(ph.phase.value_counts().index)} ({walls[op]:.0f}s)", flush=True)
    runs = pd.concat(frames, ignore_index=True)
    cells = aggregate_cells(runs.drop(columns=["run"]))
    order = {op: i for i, op in enumerate(tasks)}
    cells = cells.sort_values(["op", "fraction"], key=lambda c: c.map(order) if c.name == "op"
                              else c, kind="stable").reset_index(drop=True)
    tables.write_csv(cells, os.path.join(FLAGS.out, "op_cells.csv"))
    keep = [c for c in ("op", "fraction", "weight_decay", "lr", "init_scale") if c in cells
            and (c in ("op", "fraction") or cells[c].nunique() > 1)]
    table = cells[keep + ["n_seeds", "cell_phase", "counts", "fit_step_median",
                          "gen_step_median", "final_val_acc_median"]]
    rule = PhaseThresholds()  # the rule analysis.report labelled the runs with
    letters = ", ".join(f"{k} {p.replace('_', ' ')}" for p, k in PHASE_LETTERS.items())
    md = (f"Phase per operation and training fraction ({rule.describe()}). "
          f"Letters: {letters}.\n\n" + tables.markdown_table(table))
    tables.write_text(md + "\n", os.path.join(FLAGS.out, "op_phases.md"))
    figures.plot_phase_diagram(cells, os.path.join(FLAGS.out, "op_phase_diagram"),
                             note=f"rule: {rule.rule}")
    print(md)


if __name__ == "__main__":
    cli.run_main(main)

"""Our runs beside a published table: the course study's step x train/test accuracy x weight
norm tables (``shared/reference/study_tables.csv``, one row per logged point: ``variant, step,
train_acc, val_acc, weight_norm``).

:func:`study_table_name` maps one of our (task, variant) pairs to the study's table name;
:func:`compare_with_study` puts the seed means (and the range of test accuracy over seeds) of a
metrics table next to the study's numbers at every step both have.
"""

from __future__ import annotations

from typing import Optional

import pandas as pd

from jgrok.errors import ConfigError

#: the columns of study_tables.csv
STUDY_COLUMNS = ("variant", "step", "train_acc", "val_acc", "weight_norm")


def read_study_tables(path) -> pd.DataFrame:
    """study_tables.csv as a DataFrame (ConfigError naming the file if it is not one)."""
    try:
        ref = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the study's tables {path}: {e}") from None
    missing = [c for c in STUDY_COLUMNS if c not in ref.columns]
    if missing:
        raise ConfigError(f"{path}: not the study's tables (missing columns {missing})")
    return ref


def study_table_name(task: str, variant: str) -> Optional[str]:
    """The study's table for our ``task`` (a Dataset name: mnist1000, wine-red, ...) and study
    ``variant`` (jgrok.presets.STUDY_VARIANTS), or None if the study has none: it has all
    five variants on MNIST and the baseline on Wine Quality (colour not stated)."""
    if task.startswith("mnist") and "-" not in task:  # not the 0-vs-1 subset
        return "mnist_baseline_mse_linear" if variant == "baseline" else f"mnist_{variant}"
    if task.startswith("wine") and variant == "baseline":
        return "wine_quality_baseline"
    return None


def compare_with_study(metrics: pd.DataFrame, reference: pd.DataFrame,
                       by: tuple[str, ...] = ("task", "variant")) -> pd.DataFrame:
    """For every group of ``metrics`` (``by`` columns) that the study has a table for, one row
    per step present in both: the number of seeds, our seed means of train_acc, val_acc and
    param_norm, the min and max of val_acc over seeds, and the study's train_acc, val_acc and
    weight_norm (prefixed ``study_``). Groups or steps the study lacks are left out."""
    missing = [c for c in (*by, "step", "seed", "train_acc", "val_acc", "param_norm")
               if c not in metrics.columns]
    if missing:
        raise ConfigError(f"metrics table lacks the columns {missing}")
    out = []
    for key, g in metrics.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        coords = dict(zip(by, key))
        name = study_table_name(str(coords.get("task", "")), str(coords.get("variant", "")))
        if name is None:
            continue
        ref = reference[reference["variant"] == name].set_index("step")
        steps = g[g["step"].isin(ref.index)]
        for step, s in steps.groupby("step"):
            r = ref.loc[step]
            out.append(dict(**coords, study_table=name, step=int(step),
                            seeds=int(s["seed"].nunique()),
                            train_acc=s["train_acc"].mean(), study_train_acc=r["train_acc"],
                            val_acc=s["val_acc"].mean(), val_acc_min=s["val_acc"].min(),
                            val_acc_max=s["val_acc"].max(), study_val_acc=r["val_acc"],
                            param_norm=s["param_norm"].mean(),
                            study_weight_norm=r["weight_norm"]))
    return pd.DataFrame(out)


def comparison_markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """One Markdown section per (task, variant): step | train ours/study | test ours (range) /
    study | weight norm ours/study."""
    if table.empty:
        return "No step of these runs is in the study's tables.\n"
    parts = []
    for (task, variant), g in table.groupby(["task", "variant"], sort=False):
        seeds = g["seeds"].max()
        parts.append(f"### {task}, {variant} (study table `{g['study_table'].iloc[0]}`; ours: "
                     f"mean of {seeds} seed{'s' if seeds > 1 else ''})\n")
        parts.append("| step | train acc | study | test acc | test min-max | study | weight "
                     "norm | study |")
        parts.append("|---|---|---|---|---|---|---|---|")
        for r in g.itertuples():
            parts.append(f"| {r.step} | {r.train_acc:.{digits}f} | {r.study_train_acc:.{digits}f}"
                         f" | {r.val_acc:.{digits}f} | {r.val_acc_min:.{digits}f}-"
                         f"{r.val_acc_max:.{digits}f} | {r.study_val_acc:.{digits}f} | "
                         f"{r.param_norm:.1f} | {r.study_weight_norm:.1f} |")
        parts.append("")
    return "\n".join(parts) + "\n"

"""README text generated from the committed result tables (the results atlas).

Every number in the results READMEs that describes runs (phase counts per cell, fit and
generalization steps, delays, accuracies, spikes) sits in a *generated block*::

    <!-- generated:KIND [FOLDER] [key=value ...] -->
    ... written by render_block ...
    <!-- generated:end -->

:func:`update_text` rewrites each block's body from the tables under the results folder and
leaves everything else alone; ``python experiments/atlas.py`` writes the READMEs, and
``tests/test_atlas.py`` checks that the committed READMEs equal what it writes today.

A *diagram* is a folder under ``results/`` holding ``metrics.csv`` and ``phases.csv``, or an
operation survey (a folder holding ``op_cells.csv``, one run directory per operation, read as
one diagram with an ``op`` coordinate). Its runs are labelled from ``metrics.csv`` with the
thresholds of its ``phase_rule.json`` (:func:`jgrok.analysis.phases.read_phase_rule`; the
defaults where it has none), so the text follows the rule of today, not of the day the run was
made.

Kinds (``FOLDER`` relative to the results folder):

* ``atlas`` -- one row per diagram: its setting (operation, p, model, init scales, fractions,
  steps, from ``config.json`` and the table), runs, phase counts per cell, where grokking is.
* ``grid FOLDER`` -- phase counts per cell as a grid (``rows=``, ``cols=``: coordinates), each
  with the cell's median final validation accuracy.
* ``cells FOLDER`` -- one row per cell: counts; fit step; step to ``gen_acc`` validation
  accuracy; that step and the step validation accuracy passes half-way, each over the fit step;
  final validation accuracy. Medians with (min–max) over the cell's runs.
* ``runs FOLDER`` -- one row per run.
* ``spikes FOLDER`` -- how many training-loss spikes ``spikes.csv`` holds, in which phases, and
  every spike with a peak loss of at least ``min_peak`` (0.01) with validation accuracy at the
  evaluation before it and at its peak.
* ``summary FOLDER`` -- per group of ``keys=`` (default: the coordinates that vary): runs, final
  train and validation accuracy, weight norm at the first and last evaluation (for the MNIST
  studies, whose accuracy never reaches 0.99).
* ``csv FILE`` -- columns ``cols=`` of a committed CSV (``FILE`` relative to the results
  folder), rows filtered by ``column=value``.
* ``nanda FOLDER`` -- a progress-measures run beside Nanda et al.'s published numbers
  (:func:`jgrok.analysis.measures.paper_comparison_markdown` of its ``phases.csv`` and
  ``metrics.csv``).

Options: ``key=value`` with a coordinate name filters runs (``fraction=0.9``, several values
``init_scale=1,10``); a :class:`PhaseThresholds` field name (``gen_acc=0.9``) labels with that
threshold instead of the folder's; ``rows=``, ``cols=``, ``keys=``, ``min_peak=``.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from jgrok.analysis.phases import (PhaseThresholds, aggregate_cells, classify_table,
                                   read_phase_rule)
from jgrok.errors import ConfigError
from jgrok.schema import (PHASE_LETTERS, PHASES, SEED_COLUMNS, coordinate_columns,
                          require_columns)

BLOCK = re.compile(r"^(?P<head><!-- generated:(?P<spec>(?!end -->)[^\n]*?) -->\n)(?P<body>.*?)"
                   r"^(?P<tail><!-- generated:end -->)$", re.S | re.M)
"""A generated block: its opening marker (with the spec), body and closing marker, each marker
on a line of its own."""
_OPEN = re.compile(r"^<!-- generated:(?!end -->)", re.M)
_CLOSE = re.compile(r"^<!-- generated:end -->$", re.M)

KINDS = ("atlas", "grid", "cells", "runs", "spikes", "summary", "csv", "nanda")

#: how a coordinate is named in cell labels
_COORD_NAMES = {"init_scale": "α", "weight_decay": "wd", "lr": "lr", "fraction": ""}
_MODEL_WORDS = {"mlp": "MLP", "transformer": "transformer", "dense": "dense MLP"}


# ----------------------------------------------------------------------------- formatting
def _num(v) -> str:
    """A coordinate value: floats in %g, others as they are."""
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


def _step(v) -> str:
    return "–" if v is None or v != v else f"{float(v):g}" if not float(v).is_integer() \
        else str(int(v))


def _acc(v) -> str:
    return "–" if v != v else f"{float(v):.3f}"


def _ratio(v) -> str:
    return "–" if v != v else f"{float(v):.3g}"


def _range(values, fmt) -> str:
    """``min–max`` of the finite values (one value when they agree); ``–`` when none."""
    v = np.asarray([x for x in values if x == x], dtype=float)
    if v.size == 0:
        return "–"
    lo, hi = fmt(v.min()), fmt(v.max())
    return lo if lo == hi else f"{lo}–{hi}"


def _median_range(values, fmt) -> str:
    """``median (min–max)``; just the value where all agree; ``–`` when none."""
    v = np.asarray([x for x in values if x == x], dtype=float)
    if v.size == 0:
        return "–"
    r = _range(v, fmt)
    med = fmt(float(np.median(v)))
    return med if r == med else f"{med} ({r})"


def coord_label(name: str, value) -> str:
    """``α 10``, ``0.8`` (a fraction), ``wd 0.1``, ``add``: one coordinate of a cell."""
    word = _COORD_NAMES.get(name, "")
    return f"{word} {_num(value)}".strip()


def markdown(df: pd.DataFrame) -> str:
    """A Markdown table of already formatted cells (no trailing newline)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- diagrams
def find_diagrams(root: str | os.PathLike) -> list[str]:
    """Every diagram under ``root`` (module docstring), as posix paths relative to it,
    sorted."""
    root = os.fspath(root)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
        if rel == ".":
            continue
        if "op_cells.csv" in filenames:
            out.append(rel)
            dirnames[:] = []  # its operations are read with it
        elif "metrics.csv" in filenames and "phases.csv" in filenames:
            out.append(rel)
    return sorted(out)


@dataclass
class Diagram:
    """One diagram: its folder (relative to the results folder), its metrics table, its runs
    labelled under ``thresholds`` (:func:`classify_table`, with ``op`` for surveys) and its
    cells (:func:`aggregate_cells`); ``parts``: the run directories it was read from."""

    folder: str
    metrics: pd.DataFrame
    runs: pd.DataFrame
    cells: pd.DataFrame
    thresholds: PhaseThresholds
    setting: dict
    parts: tuple


def _first_config(path: str) -> Optional[dict]:
    """The run configuration of a folder: its config.json, else configs/*.json, else the first
    config.json below it (sorted)."""
    cands = [os.path.join(path, "config.json")] + sorted(glob.glob(os.path.join(path, "configs",
                                                                               "*.json")))
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        if "config.json" in filenames:
            cands.append(os.path.join(dirpath, "config.json"))
    for c in cands:
        if os.path.isfile(c):
            with open(c) as f:
                d = json.load(f)
            cfg = d.get("config") or next(iter(d.get("configs", {}).values()), None)
            if cfg:
                return dict(d, config=cfg)
    return None


def _model_words(model: dict) -> str:
    kind = model.get("kind", "?")
    if kind == "mlp":
        return (f"MLP ({model.get('mlp_input')}, {model.get('mlp_activation')}, "
                f"{model.get('mlp_depth')}×{model.get('mlp_width')})")
    if kind == "transformer":
        n = model.get("n_layers")
        return f"transformer ({n} layer{'s' if n != 1 else ''}, d {model.get('d_model')})"
    return _MODEL_WORDS.get(kind, kind)


def _values(df: pd.DataFrame, col: str) -> list:
    return sorted(df[col].dropna().unique().tolist()) if col in df else []


def _list_words(values, fmt=_num) -> str:
    """``0.3–0.9 (7)`` for a long numeric list, else the values joined by commas."""
    if len(values) > 4 and all(isinstance(v, (int, float, np.number)) for v in values):
        return f"{fmt(values[0])}–{fmt(values[-1])} ({len(values)})"
    return ", ".join(fmt(v) for v in values)


def _setting(path: str, metrics: pd.DataFrame, ops: Sequence[str] = ()) -> dict:
    d = _first_config(path) or {}
    cfg = d.get("config", {})
    task, model, train = cfg.get("task", {}), cfg.get("model", {}), cfg.get("train", {})
    if model.get("kind") == "dense":  # MNIST / tabular: the task is the data set
        what = ", ".join(_values(metrics, "task")) or str(d.get("dataset", "?"))
    elif ops:
        what = f"{len(ops)} operations mod {task.get('p')} ({', '.join(ops)})"
    else:
        what = f"{task.get('op', '?')} mod {task.get('p', '?')}"
    return dict(task=what, model=_model_words(model) if model else "?",
                loss=train.get("loss"),
                init_scales=_values(metrics, "init_scale"), fractions=_values(metrics,
                                                                             "fraction"),
                steps=int(metrics["step"].max()) if len(metrics) else 0)


def setting_words(s: dict) -> str:
    """``x2_plus_y2 mod 47 · MLP (embed, relu, 1×256) · α 1, 10 · fractions 0.3–0.9 (7) ·
    2200 steps``."""
    parts = [s["task"], s["model"]]
    if s.get("init_scales"):
        parts.append("α " + _list_words(s["init_scales"]))
    if s.get("fractions") and s["model"] != _MODEL_WORDS["dense"]:  # (no split: all data)
        parts.append(("fraction " if len(s["fractions"]) == 1 else "fractions ")
                     + _list_words(s["fractions"]))
    parts.append(f"{s['steps']} steps")
    return " · ".join(parts)


def _read_run_dir(path: str, thresholds: Optional[PhaseThresholds]):
    th = thresholds or read_phase_rule(path)
    metrics = pd.read_csv(os.path.join(path, "metrics.csv"))
    return metrics, classify_table(metrics, th), th


def _survey_parts(path: str) -> list[tuple[str, str]]:
    """(op, run directory) of an operation survey, in the order of its op_cells.csv."""
    subs = sorted(d for d in os.listdir(path) if os.path.isfile(os.path.join(path, d,
                                                                             "metrics.csv")))
    ops = {}
    for s in subs:
        cfg = (_first_config(os.path.join(path, s)) or {}).get("config", {})
        ops[cfg.get("task", {}).get("op", s)] = s
    order = pd.read_csv(os.path.join(path, "op_cells.csv"))["op"].drop_duplicates().tolist()
    order = [o for o in order if o in ops] + sorted(o for o in ops if o not in order)
    return [(o, ops[o]) for o in order]


def load_diagram(root: str | os.PathLike, folder: str,
                 thresholds: Optional[PhaseThresholds] = None) -> Diagram:
    """Read and label one diagram (``thresholds``: instead of the folder's rule)."""
    path = os.path.join(os.fspath(root), folder)
    if not os.path.isdir(path):
        raise ConfigError(f"no results folder {folder!r} under {os.fspath(root)}")
    if os.path.isfile(os.path.join(path, "op_cells.csv")):
        ms, rs, ths, parts = [], [], [], []
        for op, sub in _survey_parts(path):
            m, r, th = _read_run_dir(os.path.join(path, sub), thresholds)
            ms.append(m.assign(op=op))
            r.insert(1, "op", op)
            rs.append(r)
            ths.append(th)
            parts.append(f"{folder}/{sub}")
        if not rs:
            raise ConfigError(f"{folder}: an operation survey without run directories")
        metrics, runs, th = pd.concat(ms, ignore_index=True), pd.concat(rs,
                                                                        ignore_index=True), ths[0]
        order = {op: i for i, (op, _) in enumerate(_survey_parts(path))}
        setting = _setting(os.path.join(path, parts[0].split("/")[-1]), metrics, list(order))
    else:
        metrics, runs, th = _read_run_dir(path, thresholds)
        parts = (folder,)
        setting = _setting(path, metrics)
    d = Diagram(folder, metrics, runs, aggregate_cells(runs.drop(columns=["run"])), th, setting,
                tuple(parts))
    # cells in display order: op in the survey's order, then the other coordinates, fraction last
    keys = _cell_coords(d)
    if keys:
        order = {op: i for i, op in enumerate(runs["op"].drop_duplicates())} if "op" in runs \
            else {}
        d.cells = d.cells.sort_values(keys, key=lambda c: c.map(order) if c.name == "op"
                                      else c, kind="stable").reset_index(drop=True)
    return d


# ---------------------------------------------------------------------------------- cells
def _cell_coords(d: Diagram) -> list[str]:
    """The coordinates that vary between the diagram's cells, op first, fraction last."""
    coords = [c for c in d.cells.columns if c in d.runs.columns and c not in SEED_COLUMNS
              and c not in ("phase",) and c in _coordinates(d)]
    vary = sorted((c for c in coords if d.cells[c].nunique(dropna=False) > 1),
                  key=lambda c: (c != "op", c == "fraction"))
    kept: list[str] = []
    for c in vary:  # a coordinate another one determines (a variant's loss) adds nothing
        if not any(d.cells.groupby(k, dropna=False)[c].nunique(dropna=False).max() == 1
                   for k in kept):
            kept.append(c)
    return kept


def _coordinates(d: Diagram) -> list[str]:
    coords = coordinate_columns(d.metrics)
    return (["op"] if "op" in d.runs else []) + [c for c in coords if c != "op"]


def _runs_of_cell(d: Diagram, cell: pd.Series, coords: Sequence[str]) -> pd.DataFrame:
    mask = np.ones(len(d.runs), bool)
    for c in coords:
        mask &= (d.runs[c] == cell[c]).to_numpy()
    return d.runs[mask]


def _halfway_ratio(runs: pd.DataFrame) -> np.ndarray:
    return (runs["plateau_end_step"].astype(float) / runs["fit_step"].astype(float).clip(lower=1)
            ).to_numpy()


def _filter(d: Diagram, filters: dict) -> Diagram:
    if not filters:
        return d
    mask = np.ones(len(d.runs), bool)
    for k, vals in filters.items():
        if k not in d.runs:
            raise ConfigError(f"{d.folder}: no coordinate {k!r} to filter on")
        col = d.runs[k]
        ok = np.zeros(len(col), bool)
        for v in vals:
            if _is_number(v) and pd.api.types.is_numeric_dtype(col):
                ok |= np.isclose(col.astype(float).to_numpy(), float(v))
            else:
                ok |= (col.astype(str) == v).to_numpy()
        mask &= ok
    runs = d.runs[mask]
    if runs.empty:
        raise ConfigError(f"{d.folder}: no run matches {filters}")
    keep = d.cells.merge(runs.drop(columns=["run"])[_cell_keys(d)].drop_duplicates(),
                         on=_cell_keys(d), how="inner")
    return dataclasses.replace(d, runs=runs, cells=keep.reset_index(drop=True))


def _cell_keys(d: Diagram) -> list[str]:
    return [c for c in d.cells.columns if c in d.runs.columns and c in _coordinates(d)
            and c not in SEED_COLUMNS]


def _is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _grouped_cells(d: Diagram) -> list[tuple[str, list[tuple[str, pd.Series]]]]:
    """Cells grouped for a compact listing: the last varying coordinate (the fraction where it
    varies) inside, the others as the group."""
    coords = _cell_coords(d)
    inner, outer = (coords[-1:], coords[:-1]) if coords else ([], [])
    groups: dict = {}
    for _, cell in d.cells.iterrows():
        g = " ".join(coord_label(c, cell[c]) for c in outer)
        i = " ".join(coord_label(c, cell[c]) for c in inner)
        groups.setdefault(g, []).append((i, cell))
    return list(groups.items())


# -------------------------------------------------------------------------------- renderers
def render_atlas(root: str | os.PathLike, link_prefix: str = "") -> str:
    """The atlas table: one row per diagram under ``root``."""
    rows = []
    for folder in find_diagrams(root):
        d = load_diagram(root, folder)
        lines = []
        for g, cells in _grouped_cells(d):
            inner = " · ".join(f"{i} {c['counts']}".strip() for i, c in cells)
            lines.append(f"{g}: {inner}" if g else inner)
        grok = []
        for g, cells in _grouped_cells(d):
            for i, c in cells:
                if c["n_grokking"] > 0:
                    where = " ".join(x for x in (g, i) if x) or "all"
                    grok.append(f"{where} ({int(c['n_grokking'])}/{int(c['n_seeds'])})")
        n_cells = len(d.cells)
        per = d.cells["n_seeds"].astype(int)
        seeds = str(per.iloc[0]) if per.nunique() == 1 else f"{per.min()}–{per.max()}"
        rows.append({
            "folder": f"[`{folder}/`]({link_prefix}{folder}/)",
            "setting": setting_words(d.setting),
            "runs": f"{len(d.runs)} ({n_cells} cell{'s' if n_cells != 1 else ''} × {seeds})",
            "phases per cell": "<br>".join(lines),
            "grokking": ", ".join(grok) if grok else "none"})
    letters = ", ".join(f"{k} {p.replace('_', ' ')}" for p, k in PHASE_LETTERS.items())
    note = (f"Runs per phase in each cell ({letters}); grokking: the cells with a grokking run "
            f"(grokking runs / runs). Labels: {PhaseThresholds().describe()} (a folder's "
            f"`phase_rule.json` may set other thresholds).")
    return markdown(pd.DataFrame(rows)) + "\n\n" + note


def render_grid(d: Diagram, rows: Optional[str] = None, cols: Optional[str] = None) -> str:
    coords = _cell_coords(d)
    if cols is None:
        cols = coords[-1] if coords else None
    if cols is None:
        raise ConfigError(f"{d.folder}: no coordinate varies; use cells")
    rest = [c for c in coords if c != cols]
    if rows is None and len(rest) == 1:
        rows = rest[0]
    if [c for c in rest if c != rows]:  # a grid shows two coordinates, no more
        raise ConfigError(f"{d.folder}: cells vary in {', '.join(coords)}; name rows= and "
                          f"cols=, filter the others, or use cells")
    col_vals = list(dict.fromkeys(d.cells[cols]))
    row_vals = list(dict.fromkeys(d.cells[rows])) if rows else [None]
    table = []
    for rv in row_vals:
        entry = {(_COORD_NAMES.get(rows, rows) or rows) if rows else "": _num(rv) if rows
                 else "all"}
        for cv in col_vals:
            m = d.cells[cols] == cv
            if rows:
                m &= d.cells[rows] == rv
            sub = d.cells[m]
            if sub.empty:
                entry[coord_label(cols, cv)] = "–"
                continue
            c = sub.iloc[0]
            entry[coord_label(cols, cv) or _num(cv)] = \
                f"{c['counts']} ({_acc(float(c['final_val_acc_median']))})"
        table.append(entry)
    return markdown(pd.DataFrame(table)) + ("\n\n(runs per phase; in brackets the median final "
                                            "validation accuracy)")


def render_cells(d: Diagram) -> str:
    coords = _cell_coords(d)
    g = d.thresholds.gen_acc
    rows = []
    for _, cell in d.cells.iterrows():
        runs = _runs_of_cell(d, cell, coords)
        row = {(_COORD_NAMES.get(c) or c): _num(cell[c]) for c in coords}
        row.update({
            "runs": str(len(runs)), "phases": cell["counts"],
            "fit step": _median_range(runs["fit_step"], _step),
            "gen step": _median_range(runs["gen_step"], _step),
            "gen / fit": _median_range(runs["delay_ratio"], _ratio),
            "half-way / fit": _median_range(_halfway_ratio(runs), _ratio),
            "final val acc": _median_range(runs["final_val_acc"], _acc)})
        rows.append(row)
    return markdown(pd.DataFrame(rows)) + (
        f"\n\n(median (min–max) over the cell's runs. fit step: first evaluation with train acc "
        f">= {d.thresholds.fit_acc:g}; gen step: first with val acc >= {g:g}, over runs that "
        f"generalized (and end at >= {d.thresholds.hold_level:g}); half-way / fit: the step val "
        f"acc passes half-way from its value at the fit to 1, over the fit step)")


def render_runs(d: Diagram) -> str:
    coords = _cell_coords(d)
    rows = []
    for _, r in d.runs.iterrows():
        row = {"run": str(r["run"])}
        row.update({(_COORD_NAMES.get(c) or c): _num(r[c]) for c in coords})
        row.update({"seed": _num(r["seed"]) if "seed" in r else "–", "phase":
                    r["phase"].replace("_", " "),
                    "fit step": _step(r["fit_step"]), "gen step": _step(r["gen_step"]),
                    "gen / fit": _ratio(r["delay_ratio"]),
                    "half-way / fit": _ratio(_halfway_ratio(r.to_frame().T)[0]),
                    "final train acc": _acc(r["final_train_acc"]),
                    "final val acc": _acc(r["final_val_acc"])})
        rows.append(row)
    t = d.thresholds
    return markdown(pd.DataFrame(rows)) + (
        f"\n\n(gen step: first evaluation with val acc >= {t.gen_acc:g}, for a run that ends at "
        f">= {t.hold_level:g})")


def render_csv(root: str, path: str, cols: Optional[Sequence[str]] = None,
               filters: Optional[dict] = None) -> str:
    """Columns ``cols`` of the committed table ``path`` (relative to the results folder), rows
    matching ``filters``; floats with 3 significant digits."""
    df = pd.read_csv(os.path.join(root, path))
    for k, vals in (filters or {}).items():
        if k not in df:
            raise ConfigError(f"{path} has no column {k!r}")
        df = df[df[k].astype(str).isin(vals)]
    cols = list(cols) if cols else list(df.columns)
    require_columns(df, cols, path)

    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "–" if v != v else _step(v) if float(v).is_integer() else f"{float(v):.3g}"
        return str(v)

    return markdown(df[cols].map(cell))


def render_spikes(root: str, d: Diagram, min_peak: float = 0.01) -> str:
    frames = []
    for part in d.parts:
        path = os.path.join(root, part, "spikes.csv")
        if os.path.isfile(path) and os.path.getsize(path) > 1:
            try:
                sp = pd.read_csv(path)
            except pd.errors.EmptyDataError:
                continue
            if "op" in d.runs:
                sp.insert(1, "op", d.runs.loc[d.runs.index[0], "op"] if len(d.parts) == 1 else
                          _op_of_part(d, part))
            frames.append(sp)
    n_runs = len(d.runs)
    if not frames or sum(len(f) for f in frames) == 0:
        return f"No training-loss spikes in the {n_runs} runs (`spikes.csv` is empty)."
    sp = pd.concat(frames, ignore_index=True)
    key = ["op", "run"] if "op" in sp else ["run"]
    phase = d.runs.set_index(key)["phase"]
    sp["phase"] = [phase[tuple(k) if len(key) > 1 else k[0]] for k in sp[key].to_numpy()]
    n_with = sp.groupby(key).ngroups
    by_phase = ", ".join(f"{int(n)} in {p.replace('_', ' ')} runs"
                         for p, n in sp["phase"].value_counts().reindex(PHASES).dropna().items()
                         if n > 0)
    text = [f"{len(sp)} training-loss spikes in {n_with} of {n_runs} runs ({by_phase}); peak "
            f"training loss {_range(sp['peak_loss'], lambda x: f'{x:.3g}')}."]
    big = sp[sp["peak_loss"] >= min_peak]
    if big.empty:
        text.append(f"None reaches a peak loss of {min_peak:g}.")
        return "\n".join(text)
    coords = _cell_coords(d)
    rows = []
    for _, s in big.iterrows():
        m = d.metrics
        sel = m["run"] == s["run"]
        if "op" in s:
            sel &= m["op"] == s["op"]
        g = m[sel].sort_values("step")
        before = g[g["step"] < s["step"]]
        at = g[g["step"] == s["peak_step"]]
        row = {"run": str(s["run"])}
        row.update({(_COORD_NAMES.get(c) or c): _num(s[c]) for c in coords if c in s})
        row.update({"phase": s["phase"].replace("_", " "), "step": _step(s["step"]),
                    "peak step": _step(s["peak_step"]),
                    "peak train loss": f"{float(s['peak_loss']):.3g}",
                    "val acc before → at peak": (
                        f"{_acc(before['val_acc'].iloc[-1]) if len(before) else '–'} → "
                        f"{_acc(at['val_acc'].iloc[0]) if len(at) else '–'}")})
        rows.append(row)
    text.append(f"\nSpikes with a peak training loss of at least {min_peak:g}:\n")
    text.append(markdown(pd.DataFrame(rows)))
    return "\n".join(text)


def _op_of_part(d: Diagram, part: str) -> str:
    i = d.parts.index(part)
    return list(dict.fromkeys(d.runs["op"]))[i]


def render_summary(d: Diagram, keys: Optional[Sequence[str]] = None) -> str:
    keys = list(keys) if keys else _cell_coords(d)
    ids = ["op", "run"] if "op" in d.metrics else ["run"]
    m = d.metrics.merge(d.runs[ids], on=ids, how="inner")  # the runs a filter kept
    per_run = []
    for _, g in m.groupby(["op", "run"] if "op" in m else "run", sort=True):
        g = g.sort_values("step")
        r = {k: g[k].iloc[0] for k in keys}
        r.update(train=float(g["train_acc"].iloc[-1]), val=float(g["val_acc"].iloc[-1]),
                 norm0=float(g["param_norm"].iloc[0]) if "param_norm" in g else math.nan,
                 norm1=float(g["param_norm"].iloc[-1]) if "param_norm" in g else math.nan,
                 step=float(g["step"].iloc[-1]))
        per_run.append(r)
    pr = pd.DataFrame(per_run)
    rows = []
    for k, g in pr.groupby(keys, sort=False) if keys else [((), pr)]:
        k = k if isinstance(k, tuple) else (k,)
        row = {(_COORD_NAMES.get(c) or c): _num(v) for c, v in zip(keys, k)}
        row.update({"runs": str(len(g)), "last step": _range(g["step"], _step),
                    "final train acc": _median_range(g["train"], _acc),
                    "final val acc": _median_range(g["val"], _acc),
                    "weight norm first → last": (f"{_median_range(g['norm0'], _norm)} → "
                                                  f"{_median_range(g['norm1'], _norm)}")})
        rows.append(row)
    return markdown(pd.DataFrame(rows)) + "\n\n(median (min–max) over the runs)"


def _norm(v) -> str:
    return "–" if v != v else f"{float(v):.1f}"


# ------------------------------------------------------------------------------ the blocks
_THRESHOLD_FIELDS = {f.name: f.type for f in dataclasses.fields(PhaseThresholds)}


def parse_spec(spec: str) -> tuple[str, Optional[str], dict]:
    """``"cells x2_plus_y2_cpu fraction=0.9"`` -> ``("cells", "x2_plus_y2_cpu",
    {"fraction": "0.9"})``."""
    words = spec.split()
    if not words or words[0] not in KINDS:
        raise ConfigError(f"generated block {spec!r}: the kind must be one of "
                          f"{', '.join(KINDS)}")
    kind, folder, opts = words[0], None, {}
    for w in words[1:]:
        if "=" in w:
            k, v = w.split("=", 1)
            opts[k] = v
        elif folder is None:
            folder = w.rstrip("/")
        else:
            raise ConfigError(f"generated block {spec!r}: one folder only")
    if kind != "atlas" and folder is None:
        raise ConfigError(f"generated block {spec!r}: {kind} needs a folder")
    return kind, folder, opts


@lru_cache(maxsize=64)
def _cached_diagram(root: str, folder: str, overrides: tuple) -> Diagram:
    th = None
    if overrides:
        base = read_phase_rule(os.path.join(root, _first_part(root, folder)))
        th = dataclasses.replace(base, **dict(overrides))
    return load_diagram(root, folder, th)


def _first_part(root: str, folder: str) -> str:
    path = os.path.join(root, folder)
    if os.path.isfile(os.path.join(path, "op_cells.csv")):
        return f"{folder}/{_survey_parts(path)[0][1]}"
    return folder


def render_block(spec: str, root: str | os.PathLike, link_prefix: str = "") -> str:
    """The body of the block ``spec`` (without its markers), ending in a blank line."""
    root = os.fspath(root)
    kind, folder, opts = parse_spec(spec)
    if kind == "atlas":
        return render_atlas(root, link_prefix) + "\n\n"
    overrides, filters = [], {}
    local = {}
    for k, v in opts.items():
        if k in _THRESHOLD_FIELDS:
            typ = _THRESHOLD_FIELDS[k]
            overrides.append((k, v if "str" in str(typ) else
                              (v.lower() in ("1", "true")) if "bool" in str(typ) else float(v)))
        elif k in ("rows", "cols", "keys", "min_peak"):
            local[k] = v
        else:
            filters[k] = v.split(",")
    if kind == "nanda":
        from jgrok.analysis.measures import paper_comparison_markdown

        base = os.path.join(root, folder)
        return paper_comparison_markdown(pd.read_csv(os.path.join(base, "phases.csv")),
                                         pd.read_csv(os.path.join(base, "metrics.csv"))) + "\n"
    if kind == "csv":
        return render_csv(root, folder, local["cols"].split(",") if "cols" in local else None,
                          filters) + "\n\n"
    d = _filter(_cached_diagram(root, folder, tuple(sorted(overrides))), filters)
    if kind == "grid":
        out = render_grid(d, local.get("rows"), local.get("cols"))
    elif kind == "cells":
        out = render_cells(d)
    elif kind == "runs":
        out = render_runs(d)
    elif kind == "spikes":
        out = render_spikes(root, d, float(local.get("min_peak", 0.01)))
    else:
        out = render_summary(d, local["keys"].split(",") if "keys" in local else None)
    if overrides:
        given = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in overrides)
        out += f"\n\n(labelled with {given} instead of the folder's thresholds)"
    return out + "\n\n"


def update_text(text: str, root: str | os.PathLike, link_prefix: str = "") -> str:
    """``text`` with the body of every generated block rewritten from the tables under
    ``root``; everything outside the blocks unchanged."""
    def sub(m: re.Match) -> str:
        return m.group("head") + render_block(m.group("spec"), root, link_prefix) + \
            m.group("tail")

    opened, closed = len(_OPEN.findall(text)), len(_CLOSE.findall(text))
    if opened != closed or len(BLOCK.findall(text)) != opened:
        raise ConfigError("each generated block must close with a <!-- generated:end --> line "
                          "before the next one opens")
    return BLOCK.sub(sub, text)


def has_blocks(text: str) -> bool:
    return bool(BLOCK.search(text))


def update_file(path: str | os.PathLike, root: str | os.PathLike, write: bool = True
                ) -> bool:
    """Rewrite the generated blocks of the Markdown file ``path``; links in the atlas are
    relative to the file. Returns whether the file's text changed (written only if
    ``write``)."""
    from jgrok import tables

    with open(path) as f:
        text = f.read()
    rel = os.path.relpath(os.fspath(root), os.path.dirname(os.path.abspath(path)))
    prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
    new = update_text(text, root, prefix)
    if new != text and write:
        tables.write_text(new, path)
    return new != text


def generated_files(repo: str | os.PathLike) -> list[str]:
    """The Markdown files of the repository that hold generated blocks: README.md,
    CHANGELOG.md, BUILD.md and every ``*.md`` under ``results/``."""
    repo = os.fspath(repo)
    cands = [os.path.join(repo, n) for n in ("README.md", "BUILD.md", "CHANGELOG.md")]
    cands += sorted(glob.glob(os.path.join(repo, "results", "**", "*.md"), recursive=True))
    out = []
    for c in cands:
        if os.path.isfile(c):
            with open(c) as f:
                if has_blocks(f.read()):
                    out.append(c)
    return out


def clear_cache() -> None:
    """Forget the diagrams read so far (after the tables changed)."""
    _cached_diagram.cache_clear()


__all__ = ["BLOCK", "KINDS", "Diagram", "find_diagrams", "load_diagram", "render_atlas",
           "render_grid", "render_cells", "render_runs", "render_spikes", "render_summary",
           "render_block", "parse_spec", "update_text", "update_file", "generated_files",
           "setting_words", "coord_label", "clear_cache"]

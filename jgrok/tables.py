"""Tidy tables and run metadata on disk. Every write goes to a temporary file in the same folder
and is renamed over the target, so an interrupted write never leaves a truncated file."""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from jgrok.schema import read_metrics  # noqa: F401  (the reader lives with the contract)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)` then rename the temporary file to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> None:
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))


def write_json(obj, path: str | os.PathLike) -> None:
    def w(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")

    atomic_write(path, w)


def versions() -> dict:
    import flax
    import jax
    import optax
    import orbax.checkpoint

    import jgrok

    return dict(jgrok=jgrok.__version__, jax=jax.__version__, flax=flax.__version__,
                optax=optax.__version__, orbax_checkpoint=orbax.checkpoint.__version__,
                python=sys.version.split()[0], platform=platform.platform(),
                backend=jax.default_backend(), devices=[str(d) for d in jax.devices()])


def markdown_table(df: pd.DataFrame, floatfmt: str = "{:.4g}", missing: str = "–") -> str:
    """A GitHub-flavoured Markdown table of `df` (no extra dependency). NaN shows as `missing`,
    whole numbers >= 1 in full (a step count of 20000 as 20000, not 2e+04), other floats with
    `floatfmt`. No trailing newline."""
    def cell(v):
        if isinstance(v, (float, np.floating)):
            if v != v:
                return missing
            if float(v).is_integer() and abs(v) >= 1:
                return str(int(v))
            return floatfmt.format(float(v))
        return str(v)

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def write_text(text: str, path: str | os.PathLike) -> None:
    def w(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, w)

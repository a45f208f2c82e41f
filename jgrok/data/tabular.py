"""Wine Quality (UCI): a validating CSV loader, a TFDS fallback and train/test arrays.

Feature order (fixed, the UCI column order, also used for TFDS's feature dict)::

    fixed acidity, volatile acidity, citric acid, residual sugar, chlorides,
    free sulfur dioxide, total sulfur dioxide, density, pH, sulphates, alcohol

``color="both"`` concatenates the red rows followed by the white rows. No feature encoding the
colour is added: the result has the same 11 columns, so red and white wines are
indistinguishable except through their physico-chemical values.

Class labels: ``wine_arrays`` maps quality scores to class indices 0..K-1. With
``classes="present"`` the classes are the distinct scores present in the whole data set
(train and test together) in increasing order, e.g. red wine's scores 3..8 become classes 0..5;
the returned ``class_scores[k]`` is the score of class ``k``.
"""

from __future__ import annotations

import csv
import math
import os
from typing import Sequence

import numpy as np

from jgrok.errors import ConfigError

FEATURE_NAMES = (
    "fixed acidity",
    "volatile acidity",
    "citric acid",
    "residual sugar",
    "chlorides",
    "free sulfur dioxide",
    "total sulfur dioxide",
    "density",
    "pH",
    "sulphates",
    "alcohol",
)
TARGET_NAME = "quality"
COLORS = ("red", "white")
WINE_FILES = {c: f"winequality-{c}.csv" for c in COLORS}
_N_COLS = len(FEATURE_NAMES) + 1


def _norm(name: str) -> str:
    return " ".join(name.strip().lower().replace("_", " ").split())


_CANON = {_norm(n): i for i, n in enumerate(FEATURE_NAMES)}


def _read_csv(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse one UCI wine CSV; returns features (N, 11) float32 in FEATURE_NAMES order, quality (N,) int32."""
    if not os.path.isfile(path):
        raise ConfigError(f"wine CSV {path}: not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"wine CSV {path}: cannot be read as UTF-8 text ({e})") from e
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    if not numbered:
        raise ConfigError(f"wine CSV {path}: empty file, expected a ';'-separated header of {_N_COLS} names and data rows")
    rows = list(csv.reader([line for _, line in numbered], delimiter=";", quotechar='"'))

    header_line, header = numbered[0][0], [h.strip() for h in rows[0]]
    if len(header) != _N_COLS:
        hint = " (looks ','-separated; expected ';')" if len(header) == 1 and "," in header[0] else ""
        raise ConfigError(
            f"wine CSV {path}: header (line {header_line}) has {len(header)} column(s){hint}, expected "
            f"{_N_COLS} ';'-separated names ending in '{TARGET_NAME}'"
        )
    if _norm(header[-1]) != TARGET_NAME:
        raise ConfigError(f"wine CSV {path}: last header column is '{header[-1]}', expected '{TARGET_NAME}'")
    order = [_CANON.get(_norm(h)) for h in header[:-1]]
    if sorted(o for o in order if o is not None) != list(range(len(FEATURE_NAMES))):
        raise ConfigError(
            f"wine CSV {path}: header features {header[:-1]} do not match the expected {list(FEATURE_NAMES)}"
        )
    if len(numbered) == 1:
        raise ConfigError(f"wine CSV {path}: header only, expected data rows after it")

    n = len(numbered) - 1
    values = np.empty((n, _N_COLS), dtype=np.float64)
    for r, ((line_no, _), fields) in enumerate(zip(numbered[1:], rows[1:])):
        if len(fields) != _N_COLS:
            hint = " (wrong delimiter? expected ';')" if len(fields) == 1 and "," in fields[0] else ""
            raise ConfigError(
                f"wine CSV {path}: data row {r + 1} (line {line_no}) has {len(fields)} field(s){hint}, "
                f"expected {_N_COLS}"
            )
        for c, field in enumerate(fields):
            try:
                v = float(field)
            except ValueError:
                v = math.nan
            if not math.isfinite(v):
                raise ConfigError(
                    f"wine CSV {path}: data row {r + 1} (line {line_no}), column {c + 1} '{header[c]}': "
                    f"value {field.strip()!r} is not a finite number"
                )
            values[r, c] = v
    quality = values[:, -1]
    bad = np.nonzero(quality != np.round(quality))[0]
    if bad.size:
        r = int(bad[0])
        raise ConfigError(
            f"wine CSV {path}: data row {r + 1} (line {numbered[r + 1][0]}): quality {quality[r]} is not an integer"
        )
    features = np.empty((n, len(FEATURE_NAMES)), dtype=np.float32)
    for src, dst in enumerate(order):
        features[:, dst] = values[:, src]
    return features, quality.astype(np.int32)


def _first_line(e: BaseException, limit: int = 160) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {(text[0] if text else '')[:limit]}"


def _read_tfds(color: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        import tensorflow_datasets as tfds

        source = tfds.data_source(f"wine_quality/{color}", split="train")
        n = len(source)
        features = np.empty((n, len(FEATURE_NAMES)), dtype=np.float32)
        quality = np.empty((n,), dtype=np.int32)
        for i in range(n):
            ex = source[i]
            feats = ex["features"]
            features[i] = [float(feats[name]) for name in FEATURE_NAMES]
            quality[i] = int(ex["quality"])
    except Exception as e:  # not registered without TensorFlow, no network, ...
        raise ConfigError(
            f"wine_quality/{color} via TFDS failed ({_first_line(e)}); pass --data_dir with "
            f"winequality-red.csv / winequality-white.csv (UCI format, ';'-separated)"
        ) from e
    return features, quality


def load_wine_quality(
    data_dir: str | os.PathLike | None = None, color: str = "red"
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Load UCI Wine Quality: ``(features (N, 11) float32, quality (N,) int32, feature_names)``.

    ``color`` is 'red' (1599 rows), 'white' (4898) or 'both' (red rows then white rows, no colour
    feature added). With ``data_dir`` the files ``winequality-red.csv`` / ``winequality-white.csv``
    are read (UCI layout: ';'-separated, quoted header of 11 feature names then ``quality``;
    columns are reordered to ``FEATURE_NAMES`` if the header lists them in another order).
    Without, TFDS ``wine_quality/<color>`` is read via ``tfds.data_source``. Problems raise
    :class:`ConfigError`.
    """
    if color not in (*COLORS, "both"):
        raise ConfigError(f"wine color {color!r}: expected 'red', 'white' or 'both'")
    colors = COLORS if color == "both" else (color,)
    if data_dir is not None:
        data_dir = os.fspath(data_dir)
        if not os.path.isdir(data_dir):
            raise ConfigError(f"wine data_dir {data_dir}: not a directory; expected a folder with {WINE_FILES[colors[0]]}")
        parts = [_read_csv(os.path.join(data_dir, WINE_FILES[c])) for c in colors]
    else:
        parts = [_read_tfds(c) for c in colors]
    features = np.concatenate([p[0] for p in parts]).astype(np.float32, copy=False)
    quality = np.concatenate([p[1] for p in parts]).astype(np.int32, copy=False)
    return features, quality, FEATURE_NAMES


def wine_arrays(
    features: np.ndarray,
    quality: np.ndarray,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    standardize: bool = True,
    classes: str | Sequence[int] = "present",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split, standardise and label: ``(x_train, y_train, x_test, y_test, class_scores)``.

    The rows are shuffled by ``np.random.default_rng(split_seed)``; the last
    ``round(N * test_fraction)`` (at least 1, at most N-1) of the permutation form the test set.
    With ``standardize`` every feature is shifted and scaled by the TRAIN mean and standard
    deviation (a constant feature is only centred). ``classes="present"`` uses the distinct scores
    present in ``quality`` in increasing order; an explicit sequence of scores (e.g.
    ``range(11)``) fixes the classes instead, and every score must be in it. Labels are class
    indices (int32); ``class_scores[k]`` (int32) is the score of class ``k``.
    """
    x = np.asarray(features, dtype=np.float64)
    q = np.asarray(quality)
    if x.ndim != 2 or q.ndim != 1 or x.shape[0] != q.shape[0]:
        raise ConfigError(f"wine_arrays: features {x.shape} and quality {q.shape}, expected (N, F) and (N,)")
    n = x.shape[0]
    if n < 2:
        raise ConfigError(f"wine_arrays: {n} row(s), expected at least 2 to split")
    if not (isinstance(test_fraction, (int, float)) and 0.0 < test_fraction < 1.0):
        raise ConfigError(f"wine_arrays: test_fraction={test_fraction!r}, expected a number in (0, 1)")
    if np.any(q != np.round(q)):
        raise ConfigError("wine_arrays: quality has non-integer values, expected integer scores")
    q = q.astype(np.int64)

    if isinstance(classes, str):
        if classes != "present":
            raise ConfigError(f"wine_arrays: classes={classes!r}, expected 'present' or a sequence of scores")
        class_scores = np.unique(q)
    else:
        class_scores = np.asarray(list(classes), dtype=np.int64)
        if class_scores.ndim != 1 or class_scores.size == 0 or np.unique(class_scores).size != class_scores.size:
            raise ConfigError(f"wine_arrays: classes={list(classes)!r}, expected distinct integer scores")
        missing = np.setdiff1d(np.unique(q), class_scores)
        if missing.size:
            raise ConfigError(f"wine_arrays: scores {missing.tolist()} not in classes {class_scores.tolist()}")
    lookup = {int(s): k for k, s in enumerate(class_scores)}
    y = np.array([lookup[int(v)] for v in q], dtype=np.int32)

    n_test = min(max(int(round(n * test_fraction)), 1), n - 1)
    perm = np.random.default_rng(split_seed).permutation(n)
    train_idx, test_idx = perm[: n - n_test], perm[n - n_test :]
    x_train, x_test = x[train_idx], x[test_idx]
    if standardize:
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        x_train = (x_train - mean) / std
        x_test = (x_test - mean) / std
    return (
        x_train.astype(np.float32),
        y[train_idx],
        x_test.astype(np.float32),
        y[test_idx],
        class_scores.astype(np.int32),
    )

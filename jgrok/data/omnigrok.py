"""Datasets and the preset of Omnigrok's MNIST experiment (Liu, Michaud & Tegmark 2022,
"Omnigrok: Grokking Beyond Algorithmic Data", script ``scripts/train-mnist-mlp.py``).

Every function returns a :class:`jgrok.data.split.Dataset` with a fixed validation set
(``val_rows``), so a sweep with ``fractions=(1.0,)`` trains every run on the whole training pool
and evaluates on the whole held-out set:

* :func:`mnist_dataset` -- the first ``n_train`` MNIST training images (or a seeded subset)
  and the full 10k test set, normalised with mean 0.1307 / std 0.3081; ``classes=(0, 1)`` keeps
  only those digits (labels become 0..k-1, the model has k outputs).
* :func:`wine_dataset` -- UCI Wine Quality, one colour, a seeded train/test split, features
  standardised with the training statistics; classes are the quality scores present.
* :func:`separable_dataset` -- a linearly separable two-class Gaussian task with a margin, the
  "trivially generalizable" control.

:func:`jgrok.presets.omnigrok_preset` is the :class:`ExperimentConfig` of Omnigrok's MNIST
script.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from jgrok.data.split import Dataset
from jgrok.errors import ConfigError

#: the number of MNIST training images Omnigrok's script trains on
OMNIGROK_TRAIN_POINTS = 1000


def _with_val(name: str, x_train, y_train, x_val, y_val, n_classes: int) -> Dataset:
    inputs = np.concatenate([x_train, x_val]).astype(np.float32, copy=False)
    targets = np.concatenate([y_train, y_val]).astype(np.int32, copy=False)
    val_rows = np.zeros(len(targets), bool)
    val_rows[len(y_train):] = True
    return Dataset(name=name, inputs=inputs, targets=targets, n_classes=int(n_classes),
                   n_labels=int(n_classes), val_rows=val_rows)


def mnist_dataset(data_dir, n_train: int = OMNIGROK_TRAIN_POINTS,
                  subset_seed: Optional[int] = None,
                  classes: Optional[Sequence[int]] = None) -> Dataset:
    """MNIST as Omnigrok trains it: ``n_train`` training rows plus the test set as
    validation rows. ``classes`` (e.g. ``(0, 1)``) keeps only those digits in both sets before
    the first ``n_train`` (or ``subset_seed``-drawn) training images are taken; label ``c`` of
    the subset becomes ``classes.index(c)``."""
    from jgrok.data.vision import NUM_CLASSES, load_mnist, mnist_arrays

    data = load_mnist(data_dir)
    name = f"mnist{n_train}"
    n_classes = NUM_CLASSES
    if classes is not None:
        classes = tuple(int(c) for c in classes)
        if len(classes) < 2 or len(set(classes)) != len(classes) or not all(
                0 <= c < NUM_CLASSES for c in classes):
            raise ConfigError(f"classes={list(classes)}: expected at least two distinct digits "
                              f"in 0..{NUM_CLASSES - 1}")
        remap = np.full(NUM_CLASSES, -1, np.int64)
        remap[list(classes)] = np.arange(len(classes))
        sub = {}
        for split in ("train", "test"):
            keep = np.isin(data[f"{split}_labels"], classes)
            sub[f"{split}_images"] = data[f"{split}_images"][keep]
            sub[f"{split}_labels"] = remap[data[f"{split}_labels"][keep]].astype(np.uint8)
        data = sub
        n_classes = len(classes)
        name = f"mnist{n_train}-digits{''.join(map(str, classes))}"
    x_tr, y_tr, x_te, y_te = mnist_arrays(data, n_train=n_train, subset_seed=subset_seed)
    return _with_val(name, x_tr, y_tr, x_te, y_te, n_classes)


def wine_dataset(data_dir, color: str = "red", test_fraction: float = 0.2,
                 split_seed: int = 0, standardize: bool = True) -> Dataset:
    """UCI Wine Quality of one colour (or 'both'): train rows then test rows (validation).
    Classes are the quality scores present (red: 3..8 -> 6 classes)."""
    from jgrok.data.tabular import load_wine_quality, wine_arrays

    features, quality, _ = load_wine_quality(data_dir, color)
    x_tr, y_tr, x_te, y_te, scores = wine_arrays(features, quality, test_fraction=test_fraction,
                                                 split_seed=split_seed,
                                                 standardize=standardize)
    return _with_val(f"wine-{color}", x_tr, y_tr, x_te, y_te, len(scores))


def separable_dataset(n: int = 1000, dim: int = 20, seed: int = 0, margin: float = 0.5,
                      n_val: int = 2000) -> Dataset:
    """A linearly separable two-class task: x ~ N(0, I_dim) with label 1[w.x > 0] for a random
    unit vector w; every point is then pushed away from the boundary along w so that
    |w.x| >= margin / 2 (margin = the gap between the classes). ``n`` training rows and
    ``n_val`` validation rows from the same distribution."""
    for name, v in (("n", n), ("dim", dim), ("n_val", n_val)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"separable_dataset: {name}={v!r} must be a positive integer")
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 0):
        raise ConfigError(f"separable_dataset: margin={margin!r} must be a finite number >= 0")
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    w = rng.standard_normal(dim)
    w /= np.linalg.norm(w)
    x = rng.standard_normal((n + n_val, dim))
    proj = x @ w
    sign = np.where(proj > 0, 1.0, -1.0)
    x += np.outer(sign * (margin / 2.0), w)
    y = (sign > 0).astype(np.int32)
    return _with_val(f"separable-d{dim}-m{margin:g}", x[:n].astype(np.float32), y[:n],
                     x[n:].astype(np.float32), y[n:], 2)

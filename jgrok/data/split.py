"""Datasets as the sweep sees them, and each run's train/validation split.

A `Dataset` is the full set of rows shared by all runs. A run's split is a pair of boolean masks
over those rows, so runs with different training fractions share arrays of one shape and batch
together under `jax.vmap`. Splits are drawn on the host with NumPy's PCG64 from the run's split
seed, so they are the same on every platform and independent of the initialisation seed.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np

from jgrok.config import FULL_BATCH
from jgrok.errors import ConfigError


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    inputs: np.ndarray  # (N, ...) model inputs
    targets: np.ndarray  # (N,) int32 correct labels
    n_classes: int  # width of the model's output
    n_labels: int  # labels are in [0, n_labels) (label noise draws from this range)
    val_rows: Optional[np.ndarray] = None  # bool (N,): fixed held-out rows; None: split by fraction

    @property
    def size(self) -> int:
        return int(self.targets.shape[0])


def dataset_from_task(task) -> Dataset:
    """A `jgrok.data.algorithmic.Task` as a Dataset (outputs over the whole vocabulary)."""
    return Dataset(name=task.name, inputs=np.asarray(task.inputs, np.int32),
                   targets=np.asarray(task.targets, np.int32), n_classes=task.vocab_size,
                   n_labels=task.n_elements)


def paper_batch_size(n_train: int, batch_size: Optional[int | str]) -> int:
    """Power et al.'s rule min(512, ceil(N_train / 2)) when `batch_size` is None; "full"
    (`jgrok.config.FULL_BATCH`): every training row."""
    if batch_size is None:
        return int(min(512, math.ceil(n_train / 2)))
    if batch_size == FULL_BATCH:
        return int(n_train)
    return int(min(batch_size, n_train))


def split_run(dataset: Dataset, fraction: float, split_seed: int, label_noise: float = 0.0,
              batch_size: Optional[int] = None) -> dict:
    """One run's split: train/val masks, training labels (with label noise), batch size."""
    n = dataset.size
    rng = np.random.Generator(np.random.PCG64(int(split_seed)))
    train_mask = np.zeros(n, bool)
    if dataset.val_rows is None:
        pool = np.arange(n)
        val_mask = np.ones(n, bool)
    else:
        pool = np.flatnonzero(~dataset.val_rows)
        val_mask = dataset.val_rows.copy()
    n_train = int(round(fraction * len(pool)))
    if n_train < 1:
        raise ConfigError(f"training fraction {fraction} leaves an empty training set "
                          f"({len(pool)} rows in {dataset.name})")
    chosen = rng.permutation(pool)[:n_train]
    train_mask[chosen] = True
    if dataset.val_rows is None:
        val_mask = ~train_mask
        if not val_mask.any():
            raise ConfigError(f"training fraction {fraction} leaves an empty validation set "
                              f"({n} rows in {dataset.name})")
    labels = dataset.targets.astype(np.int32).copy()
    if label_noise > 0:
        k = int(round(label_noise * n_train))
        noisy = rng.choice(chosen, size=k, replace=False)
        # a different, uniformly drawn label for each noisy row
        shift = rng.integers(1, dataset.n_labels, size=k)
        labels[noisy] = (labels[noisy] + shift) % dataset.n_labels
    return dict(train_mask=train_mask, val_mask=val_mask, labels=labels,
                batch_size=np.int32(paper_batch_size(n_train, batch_size)),
                n_train=np.int32(n_train))

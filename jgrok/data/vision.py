"""MNIST: an IDX reader, a loader (a folder of IDX files or TFDS) and the Omnigrok arrays.

Two sources:

* ``load_mnist(data_dir)`` reads the four standard IDX files from a folder (gzip'd or plain);
  this works offline and needs nothing but numpy.
* ``load_mnist(None)`` reads TFDS through ``tfds.data_source('mnist', ...)``, which works without
  TensorFlow (``tfds.load`` does not). If the data can be neither found nor downloaded, a
  :class:`ConfigError` says to pass ``--data_dir`` with the four IDX files.

``mnist_arrays`` turns the loaded uint8 arrays into the flat float32 inputs used by Omnigrok's
MNIST experiments (first 1000 training images, inputs normalised with mean 0.1307, std 0.3081).
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from jgrok.errors import ConfigError

IDX_LABELS_MAGIC = 2049  # 0x00000801: uint8, 1 dimension
IDX_IMAGES_MAGIC = 2051  # 0x00000803: uint8, 3 dimensions
_NDIM = {IDX_LABELS_MAGIC: 1, IDX_IMAGES_MAGIC: 3}

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10

# split -> (images file, labels file); each is also accepted without ".gz".
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _read_bytes(path: str) -> bytes:
    """The file's content, gunzipped if it is gzip data (detected by its magic bytes)."""
    if not os.path.isfile(path):
        raise ConfigError(f"IDX file {path}: not found")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"IDX file {path}: cannot be read ({e.strerror or e})") from e
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ConfigError(f"IDX file {path}: corrupt or truncated gzip data ({e})") from e
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an IDX file (gzip'd or plain) into a uint8 array.

    Supported: magic 2049 (labels, 1-D uint8) and magic 2051 (images, N x rows x cols uint8).
    The header is big-endian: a 4-byte magic number, then one 4-byte size per dimension; the
    payload must hold exactly the product of the sizes in bytes. Any deviation (missing file,
    unknown magic, short header, truncated or overlong payload) raises :class:`ConfigError`
    naming the file.
    """
    path = os.fspath(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ConfigError(f"IDX file {path}: {len(data)} bytes, too short for the 4-byte magic number")
    magic = int.from_bytes(data[:4], "big")
    if magic not in _NDIM:
        raise ConfigError(
            f"IDX file {path}: magic number {magic} (0x{magic:08x}), expected "
            f"{IDX_LABELS_MAGIC} (uint8 labels) or {IDX_IMAGES_MAGIC} (uint8 images)"
        )
    ndim = _NDIM[magic]
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ConfigError(
            f"IDX file {path}: truncated header, {len(data)} bytes but magic {magic} needs {header_len}"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if ndim == 3 and (dims[1] == 0 or dims[2] == 0):
        raise ConfigError(f"IDX file {path}: image size {dims[1]}x{dims[2]}, expected positive rows and cols")
    expected = int(np.prod(dims, dtype=np.int64))
    payload = len(data) - header_len
    if payload != expected:
        what = "truncated" if payload < expected else "trailing bytes"
        raise ConfigError(
            f"IDX file {path}: {what}: payload has {payload} bytes, expected {expected} "
            f"for dimensions {'x'.join(map(str, dims))}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(dims).copy()


def _find_file(data_dir: str, name: str) -> str:
    """``name`` (ending in .gz) or the same name without .gz inside ``data_dir``."""
    for candidate in (name, name[: -len(".gz")]):
        path = os.path.join(data_dir, candidate)
        if os.path.isfile(path):
            return path
    raise ConfigError(
        f"MNIST file {os.path.join(data_dir, name)} not found (nor without .gz); data_dir must "
        f"hold {', '.join(n for pair in MNIST_FILES.values() for n in pair)}"
    )


def _check_split(images: np.ndarray, labels: np.ndarray, img_src: str, lbl_src: str) -> None:
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise ConfigError(
            f"MNIST images {img_src}: shape {images.shape}, expected (N, {IMAGE_SHAPE[0]}, {IMAGE_SHAPE[1]})"
        )
    if labels.ndim != 1:
        raise ConfigError(f"MNIST labels {lbl_src}: shape {labels.shape}, expected a 1-D array of labels")
    if images.shape[0] != labels.shape[0]:
        raise ConfigError(
            f"MNIST count mismatch: {img_src} has {images.shape[0]} images but {lbl_src} has "
            f"{labels.shape[0]} labels"
        )
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise ConfigError(f"MNIST labels {lbl_src}: label {int(labels.max())}, expected 0..{NUM_CLASSES - 1}")


def _load_mnist_dir(data_dir: str) -> dict:
    if not os.path.isdir(data_dir):
        raise ConfigError(f"MNIST data_dir {data_dir}: not a directory; expected a folder with the four IDX files")
    out = {}
    for split, (img_name, lbl_name) in MNIST_FILES.items():
        img_path, lbl_path = _find_file(data_dir, img_name), _find_file(data_dir, lbl_name)
        images, labels = read_idx(img_path), read_idx(lbl_path)
        if images.ndim != 3:
            raise ConfigError(f"MNIST images {img_path}: IDX labels file (magic {IDX_LABELS_MAGIC}), expected images (magic {IDX_IMAGES_MAGIC})")
        if labels.ndim != 1:
            raise ConfigError(f"MNIST labels {lbl_path}: IDX images file (magic {IDX_IMAGES_MAGIC}), expected labels (magic {IDX_LABELS_MAGIC})")
        _check_split(images, labels, img_path, lbl_path)
        out[f"{split}_images"], out[f"{split}_labels"] = images, labels
    return out


def _first_line(e: BaseException, limit: int = 160) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else ""
    return f"{type(e).__name__}: {line[:limit]}"


def _tfds_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow_datasets as tfds

    source = tfds.data_source("mnist", split=split)
    n = len(source)
    try:  # batched reads are much faster on ArrayRecord sources
        examples = []
        for start in range(0, n, 10000):
            examples.extend(source.__getitems__(list(range(start, min(n, start + 10000)))))
    except (AttributeError, TypeError):  # no batched access (or a mock with another signature)
        examples = [source[i] for i in range(n)]
    images = np.empty((n, *IMAGE_SHAPE), dtype=np.uint8)
    labels = np.empty((n,), dtype=np.uint8)
    for i, ex in enumerate(examples):
        images[i] = np.asarray(ex["image"], dtype=np.uint8).reshape(IMAGE_SHAPE)
        labels[i] = int(ex["label"])
    return images, labels


def _load_mnist_tfds() -> dict:
    out = {}
    for split in MNIST_FILES:
        try:
            images, labels = _tfds_split(split)
        except ConfigError:
            raise
        except Exception as e:  # no network, not prepared, missing optional deps, ...
            raise ConfigError(
                f"MNIST via TFDS failed ({_first_line(e)}); pass --data_dir with the four IDX files "
                f"(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
                f"t10k-labels-idx1-ubyte.gz)"
            ) from e
        _check_split(images, labels, f"tfds mnist/{split}", f"tfds mnist/{split}")
        out[f"{split}_images"], out[f"{split}_labels"] = images, labels
    return out


def load_mnist(data_dir: str | os.PathLike | None = None) -> dict:
    """Load MNIST as uint8 arrays.

    Returns a dict with ``train_images`` (N, 28, 28) uint8, ``train_labels`` (N,) uint8,
    ``test_images``, ``test_labels`` (N = 60000 / 10000 for the official sets).

    With ``data_dir``: read ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
    ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` from it (each also accepted
    without ``.gz``). Without: read TFDS via ``tfds.data_source`` (no TensorFlow needed).
    Problems raise :class:`ConfigError`.
    """
    if data_dir is None:
        return _load_mnist_tfds()
    return _load_mnist_dir(os.fspath(data_dir))


def mnist_arrays(
    data: dict,
    n_train: int = 1000,
    subset_seed: int | None = None,
    normalize: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flat float32 arrays for training: ``(x_train, y_train, x_test, y_test)``.

    ``x_*`` are (n, 784) float32, ``y_*`` (n,) int32. The training set is the first ``n_train``
    training images (as in Omnigrok), or, with ``subset_seed``, ``n_train`` images drawn without
    replacement by ``np.random.default_rng(subset_seed)`` and kept in their original order. The
    whole test set is returned. Pixels are scaled to [0, 1]; with ``normalize`` they are then
    standardised with the usual MNIST constants ``(x - 0.1307) / 0.3081``.
    """
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        if key not in data:
            raise ConfigError(f"mnist_arrays: data has no '{key}'; expected the dict returned by load_mnist")
    n_avail = int(np.shape(data["train_images"])[0])
    if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)) or not 1 <= n_train <= n_avail:
        raise ConfigError(f"mnist_arrays: n_train={n_train!r}, expected an integer in 1..{n_avail}")
    if subset_seed is None:
        idx = np.arange(n_train)
    else:
        idx = np.sort(np.random.default_rng(subset_seed).choice(n_avail, size=int(n_train), replace=False))

    def prep(images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, dtype=np.float32).reshape(len(images), -1) / np.float32(255.0)
        if normalize:
            x = (x - np.float32(MNIST_MEAN)) / np.float32(MNIST_STD)
        return x.astype(np.float32, copy=False)

    x_train = prep(np.asarray(data["train_images"])[idx])
    y_train = np.asarray(data["train_labels"])[idx].astype(np.int32)
    x_test = prep(np.asarray(data["test_images"]))
    y_test = np.asarray(data["test_labels"]).astype(np.int32)
    return x_train, y_train, x_test, y_test

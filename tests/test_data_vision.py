"""Tests for jgrok.data.vision: IDX parsing, the MNIST loaders and the training arrays."""

import gzip
import os

import numpy as np
import pytest

from jgrok.data import vision
from jgrok.data.vision import ConfigError, load_mnist, mnist_arrays, read_idx


def idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    if magic is None:
        magic = 2049 if arr.ndim == 1 else 2051
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.tobytes()


def write(path, data: bytes, gz: bool) -> str:
    path = str(path)
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        with open(path, "wb") as f:
            f.write(data)
    return path


def assert_one_line_naming(excinfo, path):
    msg = str(excinfo.value)
    assert "\n" not in msg
    assert os.path.basename(str(path)) in msg, msg


def make_split(rng, n):
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=n, dtype=np.uint8)


def make_mnist_dir(tmp_path, n_train=5, n_test=3, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    data = {}
    for split, (img_name, lbl_name) in vision.MNIST_FILES.items():
        images, labels = make_split(rng, n_train if split == "train" else n_test)
        for name, arr in ((img_name, images), (lbl_name, labels)):
            write(tmp_path / (name if gz else name.removesuffix(".gz")), idx_bytes(arr), gz)
        data[f"{split}_images"], data[f"{split}_labels"] = images, labels
    return data


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_roundtrip(tmp_path, gz):
    rng = np.random.default_rng(1)
    images, labels = make_split(rng, 5)
    ip = write(tmp_path / ("i.gz" if gz else "i"), idx_bytes(images), gz)
    lp = write(tmp_path / ("l.gz" if gz else "l"), idx_bytes(labels), gz)
    got_i, got_l = read_idx(ip), read_idx(lp)
    assert got_i.dtype == np.uint8 and got_i.shape == (5, 28, 28)
    assert got_l.dtype == np.uint8 and got_l.shape == (5,)
    np.testing.assert_array_equal(got_i, images)
    np.testing.assert_array_equal(got_l, labels)


def test_read_idx_non_square_and_empty(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "a", idx_bytes(arr), False)), arr)
    empty = np.zeros((0,), dtype=np.uint8)
    assert read_idx(write(tmp_path / "e", idx_bytes(empty), False)).shape == (0,)


@pytest.mark.parametrize(
    "name,data",
    [
        ("badmagic.gz", idx_bytes(np.zeros((2, 28, 28)), magic=2050)),
        ("badmagic2", (0x12345678).to_bytes(4, "big") + b"\0" * 20),
        ("truncated.gz", idx_bytes(np.zeros((5, 28, 28)))[:-1]),
        ("trailing", idx_bytes(np.zeros((5,))) + b"\0"),
        ("shortheader", (2051).to_bytes(4, "big") + (5).to_bytes(4, "big")),
        ("tiny", b"\0\0"),
        ("empty", b""),
    ],
)
def test_read_idx_malformed(tmp_path, name, data):
    path = write(tmp_path / name, data, name.endswith(".gz"))
    with pytest.raises(ConfigError) as ei:
        read_idx(path)
    assert_one_line_naming(ei, path)


def test_read_idx_corrupt_gzip(tmp_path):
    path = write(tmp_path / "x.gz", idx_bytes(np.zeros((5, 28, 28))), True)
    raw = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(raw[: len(raw) // 2])
    with pytest.raises(ConfigError) as ei:
        read_idx(path)
    assert_one_line_naming(ei, path)


def test_read_idx_missing(tmp_path):
    path = tmp_path / "nope-idx1-ubyte.gz"
    with pytest.raises(ConfigError) as ei:
        read_idx(path)
    assert_one_line_naming(ei, path)


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_dir(tmp_path, gz):
    want = make_mnist_dir(tmp_path, gz=gz)
    got = load_mnist(str(tmp_path))
    assert set(got) == {"train_images", "train_labels", "test_images", "test_labels"}
    for k, v in want.items():
        assert got[k].dtype == np.uint8
        np.testing.assert_array_equal(got[k], v)


def test_load_mnist_missing_file(tmp_path):
    make_mnist_dir(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(ConfigError) as ei:
        load_mnist(tmp_path)
    assert_one_line_naming(ei, "t10k-labels-idx1-ubyte.gz")


def test_load_mnist_missing_dir(tmp_path):
    with pytest.raises(ConfigError) as ei:
        load_mnist(tmp_path / "absent")
    assert_one_line_naming(ei, "absent")


def test_load_mnist_count_mismatch(tmp_path):
    make_mnist_dir(tmp_path)
    write(tmp_path / "train-labels-idx1-ubyte.gz", idx_bytes(np.zeros(4)), True)
    with pytest.raises(ConfigError) as ei:
        load_mnist(tmp_path)
    assert_one_line_naming(ei, "train-labels-idx1-ubyte.gz")
    assert "5" in str(ei.value) and "4" in str(ei.value)


def test_load_mnist_swapped_files(tmp_path):
    make_mnist_dir(tmp_path)
    write(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes(np.zeros(5)), True)
    with pytest.raises(ConfigError) as ei:
        load_mnist(tmp_path)
    assert_one_line_naming(ei, "train-images-idx3-ubyte.gz")


def test_mnist_arrays_first_n_and_normalization(tmp_path):
    data = make_mnist_dir(tmp_path, n_train=5, n_test=3)
    x_tr, y_tr, x_te, y_te = mnist_arrays(load_mnist(tmp_path), n_train=4)
    assert x_tr.shape == (4, 784) and x_tr.dtype == np.float32
    assert y_tr.shape == (4,) and y_tr.dtype == np.int32
    assert x_te.shape == (3, 784) and x_te.dtype == np.float32 and y_te.dtype == np.int32
    assert vision.MNIST_MEAN == 0.1307 and vision.MNIST_STD == 0.3081
    expect = (data["train_images"][:4].reshape(4, -1) / 255.0 - 0.1307) / 0.3081
    np.testing.assert_allclose(x_tr, expect, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(y_tr, data["train_labels"][:4])
    np.testing.assert_array_equal(y_te, data["test_labels"])
    raw, _, _, _ = mnist_arrays(data, n_train=4, normalize=False)
    np.testing.assert_allclose(raw, data["train_images"][:4].reshape(4, -1) / 255.0, rtol=1e-6)
    assert raw.min() >= 0.0 and raw.max() <= 1.0


def test_mnist_arrays_subset_seed(tmp_path):
    rng = np.random.default_rng(3)
    images, labels = make_split(rng, 50)
    data = {"train_images": images, "train_labels": labels, "test_images": images[:2], "test_labels": labels[:2]}
    a = mnist_arrays(data, n_train=10, subset_seed=7)
    b = mnist_arrays(data, n_train=10, subset_seed=7)
    c = mnist_arrays(data, n_train=10, subset_seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    # every chosen row is a distinct training image
    flat = (images.reshape(50, -1) / 255.0 - 0.1307) / 0.3081
    rows = [int(np.argmin(np.abs(flat - r).sum(1))) for r in a[0]]
    assert len(set(rows)) == 10
    np.testing.assert_array_equal(a[1], labels[rows])


@pytest.mark.parametrize("n", [0, 6, -1, 2.5, True])
def test_mnist_arrays_bad_n_train(tmp_path, n):
    data = make_mnist_dir(tmp_path)
    with pytest.raises(ConfigError):
        mnist_arrays(data, n_train=n)


def test_load_mnist_tfds_mock():
    tfds = pytest.importorskip("tensorflow_datasets")
    try:
        with tfds.testing.mock_data(num_examples=7):
            data = load_mnist(None)
    except ConfigError as e:
        pytest.skip(f"tfds.testing.mock_data does not work without TensorFlow here: {e}")
    for split in ("train", "test"):
        assert data[f"{split}_images"].shape == (7, 28, 28) and data[f"{split}_images"].dtype == np.uint8
        assert data[f"{split}_labels"].shape == (7,) and data[f"{split}_labels"].dtype == np.uint8
    x_tr, y_tr, x_te, y_te = mnist_arrays(data, n_train=5)
    assert x_tr.shape == (5, 784) and x_te.shape == (7, 784) and y_tr.dtype == np.int32


def test_load_mnist_tfds_failure_is_config_error(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")

    def boom(*args, **kwargs):
        raise RuntimeError("no network\nsecond line")

    monkeypatch.setattr(tfds, "data_source", boom)
    with pytest.raises(ConfigError) as ei:
        load_mnist(None)
    msg = str(ei.value)
    assert "\n" not in msg and "--data_dir" in msg and "t10k-images-idx3-ubyte.gz" in msg

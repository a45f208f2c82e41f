"""Tests for jgrok.data.tabular: the Wine Quality CSV loader and the train/test arrays."""

import os

import numpy as np
import pytest

from jgrok.data.tabular import FEATURE_NAMES, ConfigError, load_wine_quality, wine_arrays

HEADER = ";".join(f'"{n}"' for n in (*FEATURE_NAMES, "quality"))


def make_rows(n, seed, scores=(3, 4, 5, 6, 7, 8)):
    rng = np.random.default_rng(seed)
    feats = np.round(rng.uniform(0.1, 50.0, size=(n, 11)), 4).astype(np.float32)
    quality = rng.choice(scores, size=n).astype(np.int32)
    return feats, quality


def csv_text(feats, quality, sep=";", header=HEADER):
    lines = [header]
    for f, q in zip(feats, quality):
        lines.append(sep.join([repr(float(v)) for v in f] + [str(int(q))]))
    return "\n".join(lines) + "\n"


def write_wine(tmp_path, color, feats, quality, **kw):
    path = tmp_path / f"winequality-{color}.csv"
    path.write_text(csv_text(feats, quality, **kw))
    return path


def assert_one_line_naming(excinfo, name):
    msg = str(excinfo.value)
    assert "\n" not in msg
    assert os.path.basename(str(name)) in msg, msg


@pytest.mark.parametrize("color", ["red", "white"])
def test_load_roundtrip(tmp_path, color):
    feats, quality = make_rows(9, seed=1)
    write_wine(tmp_path, color, feats, quality)
    x, q, names = load_wine_quality(str(tmp_path), color=color)
    assert x.dtype == np.float32 and x.shape == (9, 11)
    assert q.dtype == np.int32 and q.shape == (9,)
    assert names == FEATURE_NAMES and len(names) == 11 and names[8] == "pH"
    np.testing.assert_array_equal(x, feats)
    np.testing.assert_array_equal(q, quality)


def test_load_both_concatenates_red_then_white(tmp_path):
    rf, rq = make_rows(4, seed=1)
    wf, wq = make_rows(6, seed=2, scores=(5, 9))
    write_wine(tmp_path, "red", rf, rq)
    write_wine(tmp_path, "white", wf, wq)
    x, q, _ = load_wine_quality(tmp_path, color="both")
    assert x.shape == (10, 11)  # no colour feature added
    np.testing.assert_array_equal(x, np.concatenate([rf, wf]))
    np.testing.assert_array_equal(q, np.concatenate([rq, wq]))


def test_load_reorders_permuted_header_and_tolerates_blank_lines(tmp_path):
    feats, quality = make_rows(3, seed=4)
    perm = [10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    header = ";".join([f'"{FEATURE_NAMES[i]}"' for i in perm] + ['"quality"'])
    path = tmp_path / "winequality-red.csv"
    path.write_text(csv_text(feats[:, perm], quality, header=header) + "\n\n")
    x, q, _ = load_wine_quality(tmp_path)
    np.testing.assert_array_equal(x, feats)
    np.testing.assert_array_equal(q, quality)


def _bad(tmp_path, text, color="red"):
    path = tmp_path / f"winequality-{color}.csv"
    path.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_wine_quality(tmp_path, color=color)
    assert_one_line_naming(ei, path)
    return str(ei.value)


def test_ragged_row(tmp_path):
    feats, quality = make_rows(5, seed=1)
    lines = csv_text(feats, quality).splitlines()
    lines[3] = lines[3].rsplit(";", 1)[0]  # drop quality on data row 3
    msg = _bad(tmp_path, "\n".join(lines) + "\n")
    assert "row 3" in msg and "line 4" in msg and "11" in msg


def test_non_numeric(tmp_path):
    feats, quality = make_rows(5, seed=1)
    lines = csv_text(feats, quality).splitlines()
    fields = lines[2].split(";")
    fields[8] = "abc"
    lines[2] = ";".join(fields)
    msg = _bad(tmp_path, "\n".join(lines) + "\n")
    assert "row 2" in msg and "pH" in msg and "abc" in msg


def test_non_integer_quality(tmp_path):
    feats, quality = make_rows(3, seed=1)
    text = csv_text(feats, quality).splitlines()
    text[1] = text[1].rsplit(";", 1)[0] + ";5.5"
    assert "quality" in _bad(tmp_path, "\n".join(text) + "\n")


def test_wrong_delimiter(tmp_path):
    feats, quality = make_rows(3, seed=1)
    header = ",".join(f'"{n}"' for n in (*FEATURE_NAMES, "quality"))
    msg = _bad(tmp_path, csv_text(feats, quality, sep=",", header=header))
    assert "';'" in msg


def test_wrong_delimiter_in_data_only(tmp_path):
    feats, quality = make_rows(3, seed=1)
    assert "row 1" in _bad(tmp_path, csv_text(feats, quality, sep=","))


@pytest.mark.parametrize("text", ["", "\n\n", HEADER + "\n"])
def test_empty_or_header_only(tmp_path, text):
    _bad(tmp_path, text)


def test_bad_header_names(tmp_path):
    feats, quality = make_rows(3, seed=1)
    header = HEADER.replace('"alcohol"', '"sugar2"')
    _bad(tmp_path, csv_text(feats, quality, header=header))
    header = HEADER.replace('"quality"', '"score"')
    _bad(tmp_path, csv_text(feats, quality, header=header))


def test_missing_file(tmp_path):
    feats, quality = make_rows(3, seed=1)
    write_wine(tmp_path, "red", feats, quality)
    with pytest.raises(ConfigError) as ei:
        load_wine_quality(tmp_path, color="both")
    assert_one_line_naming(ei, "winequality-white.csv")
    with pytest.raises(ConfigError) as ei:
        load_wine_quality(tmp_path / "absent")
    assert_one_line_naming(ei, "absent")


def test_bad_color(tmp_path):
    with pytest.raises(ConfigError) as ei:
        load_wine_quality(tmp_path, color="rose")
    assert "rose" in str(ei.value) and "\n" not in str(ei.value)


def test_tfds_failure_is_config_error(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")

    def boom(*args, **kwargs):
        raise RuntimeError("Dataset wine_quality not found.\nAvailable datasets: ...")

    monkeypatch.setattr(tfds, "data_source", boom)
    with pytest.raises(ConfigError) as ei:
        load_wine_quality(None, color="white")
    msg = str(ei.value)
    assert "\n" not in msg and "--data_dir" in msg and "winequality-white.csv" in msg


def test_tfds_feature_order(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    feats, quality = make_rows(4, seed=5)
    examples = [
        {"features": {n: np.float32(f[i]) for i, n in reversed(list(enumerate(FEATURE_NAMES)))}, "quality": np.int32(q)}
        for f, q in zip(feats, quality)
    ]
    monkeypatch.setattr(tfds, "data_source", lambda name, split: examples)
    x, q, names = load_wine_quality(None, color="red")
    np.testing.assert_array_equal(x, feats)
    np.testing.assert_array_equal(q, quality)


def test_wine_arrays_split_standardize_classes():
    feats, quality = make_rows(200, seed=0, scores=(3, 5, 6, 8))
    x_tr, y_tr, x_te, y_te, scores = wine_arrays(feats, quality, test_fraction=0.25, split_seed=3)
    assert x_tr.shape == (150, 11) and x_te.shape == (50, 11)
    assert x_tr.dtype == np.float32 and y_tr.dtype == np.int32 and scores.dtype == np.int32
    np.testing.assert_array_equal(scores, [3, 5, 6, 8])
    # train statistics: mean 0, std 1 on train; test uses the same shift/scale
    np.testing.assert_allclose(x_tr.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x_tr.std(0), 1.0, atol=1e-5)
    assert np.abs(x_te.mean(0)).max() > 1e-3
    # labels map back to the original scores; rows are a partition of the data
    x_raw = wine_arrays(feats, quality, test_fraction=0.25, split_seed=3, standardize=False)
    all_rows = np.concatenate([x_raw[0], x_raw[2]])
    order = np.lexsort(all_rows.T[::-1])
    np.testing.assert_array_equal(all_rows[order], feats[np.lexsort(feats.T[::-1])])
    all_scores = np.concatenate([scores[x_raw[1]], scores[x_raw[3]]])
    assert sorted(all_scores.tolist()) == sorted(quality.tolist())
    mean, std = x_raw[0].astype(np.float64).mean(0), x_raw[0].astype(np.float64).std(0)
    np.testing.assert_allclose(x_te, (x_raw[2] - mean) / std, rtol=1e-4, atol=1e-4)


def test_wine_arrays_deterministic_by_seed():
    feats, quality = make_rows(50, seed=0)
    a = wine_arrays(feats, quality, split_seed=1)
    b = wine_arrays(feats, quality, split_seed=1)
    c = wine_arrays(feats, quality, split_seed=2)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[2], c[2])
    assert a[0].shape == (40, 11) and a[2].shape == (10, 11)


def test_wine_arrays_explicit_classes():
    feats, quality = make_rows(30, seed=0, scores=(4, 6))
    _, y_tr, _, y_te, scores = wine_arrays(feats, quality, classes=range(11))
    assert scores.tolist() == list(range(11))
    assert set(np.concatenate([y_tr, y_te]).tolist()) <= {4, 6}
    with pytest.raises(ConfigError):
        wine_arrays(feats, quality, classes=[4, 5])
    with pytest.raises(ConfigError):
        wine_arrays(feats, quality, classes="all")


@pytest.mark.parametrize("frac", [0.0, 1.0, -0.1, "x"])
def test_wine_arrays_bad_fraction(frac):
    feats, quality = make_rows(10, seed=0)
    with pytest.raises(ConfigError):
        wine_arrays(feats, quality, test_fraction=frac)


def test_wine_arrays_shape_mismatch():
    feats, quality = make_rows(10, seed=0)
    with pytest.raises(ConfigError):
        wine_arrays(feats, quality[:-1])

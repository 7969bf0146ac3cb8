"""Datasets, stratified splits, bad-input errors and standardization (training/data.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from training.data import Standardization, load_file_data, load_splits, make_data_spec
from training.errors import UsageError


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def blob_rows(n_per_class: int = 10, classes: int = 2) -> list[list[object]]:
    rng = np.random.default_rng(0)
    rows: list[list[object]] = []
    for c in range(classes):
        for _ in range(n_per_class):
            a, b = rng.normal(loc=3.0 * c, size=2)
            rows.append([round(a, 4), round(b, 4), c])
    return rows


def test_digits_are_images_with_raw_pixels() -> None:
    splits = load_splits(make_data_spec("digits"))
    assert splits.kind == "image"
    assert splits.sample_shape == (1, 8, 8)
    assert splits.train.X.dtype == np.float32 and splits.train.y.dtype == np.int64
    assert splits.train.X.shape[1:] == (1, 8, 8)
    assert splits.train.X.min() == 0.0 and splits.train.X.max() == 16.0
    assert splits.labels == [str(d) for d in range(10)]
    assert splits.feature_names is None
    assert len(splits.train) + len(splits.val) + len(splits.test) == 1797
    assert len(splits.test) == pytest.approx(0.2 * 1797, abs=1)


@pytest.mark.parametrize("name", ["breast_cancer", "wine"])
def test_tabular_builtins_keep_feature_names(name: str) -> None:
    splits = load_splits(make_data_spec(name))
    assert splits.kind == "tabular"
    assert splits.feature_names is not None
    assert len(splits.feature_names) == splits.sample_shape[0] == splits.train.X.shape[1]
    info = splits.input_info()
    assert info["kind"] == "tabular" and info["sample_shape"] == list(splits.sample_shape)


def test_split_is_reproducible_disjoint_and_stratified() -> None:
    spec = make_data_spec("breast_cancer", seed=3)
    a, b = load_splits(spec), load_splits(dict(spec))
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, part).X, getattr(b, part).X)
        np.testing.assert_array_equal(getattr(a, part).y, getattr(b, part).y)
    rows = {tuple(x) for x in a.train.X.tolist()}
    assert not rows & {tuple(x) for x in a.test.X.tolist()}
    assert not rows & {tuple(x) for x in a.val.X.tolist()}
    share = [np.mean(getattr(a, p).y) for p in ("train", "val", "test")]
    assert max(share) - min(share) < 0.03  # same class balance in every split
    other = load_splits(make_data_spec("breast_cancer", seed=4))
    assert not np.array_equal(other.test.y, a.test.y) or not np.array_equal(other.test.X, a.test.X)


def test_csv_dataset_keeps_feature_names_and_labels(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "blobs.csv", ["alpha", "beta", "target"], blob_rows())
    splits = load_splits(make_data_spec(str(path), label_column="target"))
    assert splits.feature_names == ["alpha", "beta"]
    assert splits.labels == ["0", "1"]
    assert splits.spec["name"] == "blobs"
    assert splits.kind == "tabular"


@pytest.mark.parametrize(
    ("header", "rows", "label", "message"),
    [
        (["a", "b", "y"], blob_rows(), "label", "no label column 'label'"),
        (["a", "b", "y"], blob_rows(), None, "--label-column"),
        (["a", "b", "y"], [*blob_rows(), [1, 2, "cat"]], "y", "class 'cat' has 1 sample"),
        (
            ["a", "b", "y"],
            [*blob_rows(), ["x1", 2, 0]],
            "y",
            "line 22, column 'a': 'x1' is not a number, unlike the column's other values; "
            "fix the cell, or pass --categorical a",
        ),
        (["a", "b", "y"], [*blob_rows(), ["nan", 2, 0]], "y", "line 22, column 'a': missing"),
        (["a", "b", "y"], [*blob_rows(), ["", 2, 0]], "y", "use --missing drop"),
        (["a", "b", "y"], [*blob_rows(), [1, "inf", 0]], "y", "column 'b': 'inf' is not finite"),
        (["a", "b", "y"], [*blob_rows(), [1, 2, "NA"]], "y", "line 22, column 'y': missing label"),
        (["a", "b", "y"], blob_rows(classes=1), "y", "single class"),
        (["a", "b", "y"], [*blob_rows(), [1, 2, 0.5]], "y", "integer class ids or class names"),
        (["a", "b", "y"], [*blob_rows(), [1, 2, 7]], "y", "class '7' has 1 sample"),
    ],
)
def test_bad_csv_is_a_usage_error(
    tmp_path: Path, header: list[str], rows: list[list[object]], label: str | None, message: str
) -> None:
    path = write_csv(tmp_path / "bad.csv", header, rows)
    with pytest.raises(UsageError) as info:
        load_splits(make_data_spec(str(path), label_column=label))
    assert message in str(info.value)


def test_missing_file_and_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        make_data_spec(str(tmp_path / "absent.csv"), label_column="y")
    with pytest.raises(UsageError, match="unknown dataset 'mnist'"):
        make_data_spec("mnist")
    with pytest.raises(UsageError, match="sum to less than 1"):
        make_data_spec("digits", val_fraction=0.5, test_fraction=0.5)


def test_changed_file_is_noticed(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", ["a", "b", "y"], blob_rows())
    spec = make_data_spec(str(path), label_column="y")
    write_csv(path, ["a", "b", "y"], blob_rows(n_per_class=11))
    with pytest.raises(UsageError, match="changed"):
        load_splits(spec)


@pytest.mark.parametrize(
    ("shape", "kind", "sample_shape"),
    [
        ((60, 5), "tabular", (5,)),
        ((60, 6, 7), "image", (1, 6, 7)),
        ((60, 3, 6, 6), "image", (3, 6, 6)),
    ],
)
def test_npz_shapes(tmp_path: Path, shape: tuple[int, ...], kind: str, sample_shape: tuple) -> None:
    rng = np.random.default_rng(1)
    path = tmp_path / "d.npz"
    np.savez(path, X=rng.normal(size=shape), y=np.arange(60) % 3)
    splits = load_splits(make_data_spec(str(path)))
    assert splits.kind == kind
    assert splits.sample_shape == sample_shape
    assert splits.labels == ["0", "1", "2"]
    assert (splits.feature_names is not None) == (kind == "tabular")


def test_npz_label_names_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "named.npz"
    np.savez(
        good,
        X=np.random.default_rng(0).normal(size=(30, 2)),
        y=np.arange(30) % 2,
        labels=np.array(["no", "yes"]),
    )
    assert load_splits(make_data_spec(str(good))).labels == ["no", "yes"]
    missing = tmp_path / "missing.npz"
    np.savez(missing, X=np.zeros((10, 2)))
    with pytest.raises(UsageError, match="missing array"):
        load_splits(make_data_spec(str(missing)))
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip file")
    with pytest.raises(UsageError, match="cannot read"):
        load_splits(make_data_spec(str(corrupt)))
    text = tmp_path / "text.npz"
    np.savez(text, X=np.array([["a", "b"]] * 10), y=np.arange(10) % 2)
    with pytest.raises(UsageError, match="X must be numeric"):
        load_splits(make_data_spec(str(text)))


def test_standardization_matches_numpy_per_feature() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(loc=[1.0, -5.0, 100.0], scale=[2.0, 0.5, 30.0], size=(200, 3))
    x[:, 1] = 7.0  # constant feature: std must not be ~0
    std = Standardization.fit(x)
    np.testing.assert_allclose(std.mean, x.mean(axis=0))
    np.testing.assert_allclose(std.std, [x[:, 0].std(), 1.0, x[:, 2].std()])
    z = std.apply(x)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=0), [0.0, 0.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(z[:, [0, 2]].std(axis=0), [1.0, 1.0], rtol=1e-5)
    np.testing.assert_allclose(std.apply(x[7]), z[7], rtol=1e-6)


def test_standardization_per_channel_for_images() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2, 4, 4)) * np.array([1.0, 10.0])[None, :, None, None]
    std = Standardization.fit(x)
    assert std.mean.shape == (2,)
    np.testing.assert_allclose(std.std, [x[:, 0].std(), x[:, 1].std()])
    z = std.apply(x)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), [1.0, 1.0], rtol=1e-5)
    np.testing.assert_allclose(std.apply(x[3]), z[3], rtol=1e-6)
    again = Standardization.from_dict(std.to_dict())
    np.testing.assert_array_equal(again.apply(x), z)


def test_load_file_data_maps_labels_to_the_model(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "more.csv", ["a", "b", "y"], blob_rows())
    model = SimpleNamespace(
        labels=["0", "1"], input={"sample_shape": [2], "feature_names": ["b", "a"]}
    )
    x, y = load_file_data(str(path), "y", model)
    assert x.shape == (20, 2) and x.dtype == np.float32
    rows = blob_rows()
    np.testing.assert_allclose(x[:, 0], [r[1] for r in rows], rtol=1e-6)  # by name: b first
    np.testing.assert_array_equal(y, [0] * 10 + [1] * 10)
    other = SimpleNamespace(
        labels=["0", "1"], input={"sample_shape": [3], "feature_names": ["a", "b", "c"]}
    )
    with pytest.raises(UsageError, match="the model's feature 'c' is not a column of the file"):
        load_file_data(str(path), "y", other)
    with pytest.raises(UsageError, match="not one of the model's classes"):
        load_file_data(str(path), "y", SimpleNamespace(labels=["a"], input=model.input))


@pytest.mark.parametrize("name", ["digits", "wine"])
def test_bundled_datasets_carry_the_sha256_of_their_arrays(name: str) -> None:
    import hashlib

    from sklearn import datasets

    bunch = {"digits": datasets.load_digits, "wine": datasets.load_wine}[name]()
    want = hashlib.sha256(
        np.asarray(bunch.data, dtype="<f8").tobytes() + np.asarray(bunch.target, "<i8").tobytes()
    ).hexdigest()
    splits = load_splits(make_data_spec(name))
    assert splits.spec["sha256"] == want
    load_splits(splits.spec)  # the same data again: accepted
    with pytest.raises(UsageError, match="differs from the one the model was trained on"):
        load_splits({**splits.spec, "sha256": "0" * 64})

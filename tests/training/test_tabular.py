"""Tabular data as it comes (training/tabular.py through training/data.py): missing values,
text columns, string labels, column names, feature selection, .npz names."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from bnfold.card import CategoricalFeature, NumericFeature
from training.columns import MISSING_TOKENS
from training.data import load_splits, make_data_spec
from training.errors import UsageError
from training.tabular import Table, encode, fit_tabular_spec


def write_rows(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def animals(n: int = 60, seed: int = 0) -> list[list[object]]:
    """Rows of (weight, colour, 'leg count', species): species follows weight and colour."""
    rng = np.random.default_rng(seed)
    rows: list[list[object]] = []
    for i in range(n):
        species = ["cat", "dog", "emu"][i % 3]
        weight = round(float(rng.normal({"cat": 4, "dog": 20, "emu": 40}[species], 1)), 3)
        colour = {"cat": "grey", "dog": "brown", "emu": "black"}[species] if i % 5 else "white"
        rows.append([weight, colour, 2 if species == "emu" else 4, species])
    return rows


HEADER = ["weight (kg)", "colour", "leg count", "species"]


@pytest.mark.parametrize("token", sorted(MISSING_TOKENS))
def test_every_missing_token_is_missing(tmp_path: Path, token: str) -> None:
    rows = animals()
    rows[4][0] = token
    path = write_rows(tmp_path / "a.csv", HEADER, rows)
    with pytest.raises(UsageError) as info:
        load_splits(make_data_spec(str(path), "species"))
    assert str(info.value) == (
        f"{path}: line 6, column 'weight (kg)': missing value; "
        "use --missing drop (drop such rows) or --missing mean|median (fill them)"
    )


def test_string_labels_text_columns_and_names_with_punctuation(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "a.csv", HEADER, animals())
    splits = load_splits(make_data_spec(str(path), "species"))
    assert splits.labels == ["cat", "dog", "emu"]  # sorted names
    spec = splits.tabular
    assert spec is not None
    assert [type(f).__name__ for f in spec.features] == [
        "NumericFeature",
        "CategoricalFeature",
        "NumericFeature",
    ]
    assert spec.features[1] == CategoricalFeature(
        name="colour", categories=["black", "brown", "grey", "white"]
    )
    assert splits.feature_names == [
        "weight (kg)",
        "colour=black",
        "colour=brown",
        "colour=grey",
        "colour=white",
        "leg count",
    ]
    assert splits.sample_shape == (6,)
    # The one-hot columns, recomputed from the file: every row has exactly one colour.
    x = np.concatenate([splits.train.X, splits.val.X, splits.test.X])
    assert np.all(x[:, 1:5].sum(axis=1) == 1)
    info = splits.input_info()
    assert info["tabular"]["features"][1]["categories"] == ["black", "brown", "grey", "white"]


def test_encoding_matches_the_file_row_by_row(tmp_path: Path) -> None:
    rows = animals()
    path = write_rows(tmp_path / "a.csv", HEADER, rows)
    splits = load_splits(make_data_spec(str(path), "species"))
    colours = ["black", "brown", "grey", "white"]
    expected = sorted(
        (
            float(np.float32(r[0])),
            *(float(c == r[1]) for c in colours),
            float(r[2]),
            ["cat", "dog", "emu"].index(str(r[3])),
        )
        for r in rows
    )
    got = sorted(
        (*x.tolist(), int(y))
        for part in (splits.train, splits.val, splits.test)
        for x, y in zip(part.X, part.y, strict=True)
    )
    assert got == expected


def test_labels_option_sets_the_class_order(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "a.csv", HEADER, animals())
    spec = make_data_spec(str(path), "species", labels=["emu", "cat", "dog"])
    splits = load_splits(spec)
    assert splits.labels == ["emu", "cat", "dog"]
    emu = splits.train.X[splits.train.y == 0]
    assert np.all(emu[:, 5] == 2)  # emus have two legs: class 0 is really "emu"


def test_features_selection_and_categorical_option(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "a.csv", HEADER, animals())
    spec = make_data_spec(
        str(path), "species", features=["leg count", "weight (kg)"], categorical=["leg count"]
    )
    splits = load_splits(spec)
    assert splits.feature_names == ["leg count=2", "leg count=4", "weight (kg)"]
    assert isinstance(splits.tabular.features[0], CategoricalFeature)  # type: ignore[union-attr]


def test_mean_and_median_fill_from_the_training_split_only(tmp_path: Path) -> None:
    rows = animals(90)
    for i in range(0, 90, 7):
        rows[i][0] = "NA"
    for i in range(1, 90, 11):
        rows[i][1] = ""
    rows[2][0] = 10_000.0  # an outlier: wherever it lands, it shows which rows were averaged
    path = write_rows(tmp_path / "a.csv", HEADER, rows)
    for policy, reduce in (("mean", np.mean), ("median", np.median)):
        splits = load_splits(make_data_spec(str(path), "species", missing=policy))
        weight = splits.tabular.features[0]  # type: ignore[union-attr]
        assert isinstance(weight, NumericFeature) and weight.fill is not None
        train = splits.train.X[:, 0].astype(np.float64)
        filled = np.isclose(train, np.float32(weight.fill))
        present = train[~filled]
        assert weight.fill == pytest.approx(reduce(present), rel=1e-6)
        every = [float(r[0]) for r in rows if r[0] != "NA"]
        assert weight.fill != pytest.approx(reduce(every), rel=1e-6)
        colour = splits.tabular.features[1]  # type: ignore[union-attr]
        assert isinstance(colour, CategoricalFeature)
        hot = splits.train.X[:, 1:5].argmax(axis=1)
        counts = np.bincount(hot, minlength=4)
        assert colour.fill == colour.categories[int(counts.argmax())]
        assert np.all(splits.test.X[:, 1:5].sum(axis=1) == 1)  # filled rows are one-hot too


def test_drop_removes_rows_with_missing_values(tmp_path: Path) -> None:
    rows = animals(90)
    for i in (3, 10, 50):
        rows[i][1] = "n/a"
    rows[20][3] = "NA"  # a missing label is dropped too
    path = write_rows(tmp_path / "a.csv", HEADER, rows)
    splits = load_splits(make_data_spec(str(path), "species", missing="drop"))
    assert len(splits.train) + len(splits.val) + len(splits.test) == 86
    assert splits.tabular.features[1].fill is None  # type: ignore[union-attr]


def test_category_seen_only_outside_the_training_split(tmp_path: Path) -> None:
    rows = animals(90)
    rows[40][1] = "striped"  # one row: it lands in train for some seeds, elsewhere for others
    path = write_rows(tmp_path / "a.csv", HEADER, rows)
    outcomes = set()
    for seed in range(8):
        try:
            splits = load_splits(make_data_spec(str(path), "species", seed=seed))
        except UsageError as exc:
            assert str(exc).startswith(
                f"{path}: line 42, column 'colour': category 'striped' is not one of "
                "'black', 'brown', 'grey', 'white'; the categories are learned on the training"
            )
            outcomes.add("refused")
        else:
            assert "striped" in splits.tabular.features[1].categories  # type: ignore[union-attr]
            outcomes.add("learned")
    assert outcomes == {"refused", "learned"}


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        (["1", "2", "x"], "line 4, column 'c': 'x' is not a number, unlike the column's other"),
        (["a", "b", "3"], "line 4, column 'c': '3' is a number, unlike the column's other values"),
    ],
)
def test_mixed_column_names_the_odd_cell(tmp_path: Path, cells: list[str], message: str) -> None:
    rows = [[c, i % 2] for i, c in enumerate(cells)]
    path = write_rows(tmp_path / "m.csv", ["c", "y"], rows)
    with pytest.raises(UsageError, match=message) as info:
        load_splits(make_data_spec(str(path), "y"))
    assert "--categorical c" in str(info.value)


def test_header_problems(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "h.csv", ["a", "a", "y"], [[1, 2, 0]])
    with pytest.raises(UsageError, match="names column 'a' twice"):
        load_splits(make_data_spec(str(path), "y"))
    path = write_rows(tmp_path / "e.csv", ["a", " ", "y"], [[1, 2, 0]])
    with pytest.raises(UsageError, match="header column 2 has no name"):
        load_splits(make_data_spec(str(path), "y"))
    path = write_rows(tmp_path / "l.csv", ["a", "y"], [[1, 0]])
    with pytest.raises(UsageError, match="the label column 'y' cannot also be a feature"):
        load_splits(make_data_spec(str(path), "y", features=["a", "y"]))


def test_npz_with_names_string_labels_and_nan(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    x[7, 1] = np.nan
    y = np.array(["no", "yes"])[np.arange(60) % 2]
    path = tmp_path / "d.npz"
    np.savez(path, X=x, y=y, feature_names=np.array(["alpha", "beta", "gamma"]))
    with pytest.raises(UsageError) as info:
        load_splits(make_data_spec(str(path)))
    assert str(info.value).startswith(f"{path}: sample 7, column 'beta': missing value; use")
    splits = load_splits(make_data_spec(str(path), missing="median", features=["gamma", "beta"]))
    assert splits.labels == ["no", "yes"] and splits.feature_names == ["gamma", "beta"]
    beta = splits.tabular.features[1]  # type: ignore[union-attr]
    assert isinstance(beta, NumericFeature) and beta.fill is not None
    coded = tmp_path / "coded.npz"
    np.savez(coded, X=np.c_[x[:, :1], np.arange(60) % 3], y=np.arange(60) % 2)
    splits = load_splits(make_data_spec(str(coded), missing="mean", categorical=["x1"]))
    assert splits.feature_names == ["x0", "x1=0", "x1=1", "x1=2"]


def test_encode_refuses_what_the_spec_lacks() -> None:
    rows = np.array([2, 3, 4])
    train = Table(
        "t.csv", "line", rows, ["n", "c"], [np.array([1.0, 2.0, 3.0]), _text("a", "b", "a")]
    )
    spec = fit_tabular_spec(train, "error")
    np.testing.assert_array_equal(encode(train, spec, "u", "m"), [[1, 1, 0], [2, 0, 1], [3, 1, 0]])
    other = Table(
        "v.csv", "line", rows, ["n", "c"], [np.array([1.0, np.nan, 3.0]), _text("a", "b", "z")]
    )
    with pytest.raises(UsageError, match=re.escape("v.csv: line 3, column 'n': missing value; m")):
        encode(other, spec, "u", "m")
    filled = fit_tabular_spec(train, "mean")
    with pytest.raises(
        UsageError,
        match=re.escape("v.csv: line 4, column 'c': category 'z' is not one of 'a', 'b'; u"),
    ):
        encode(other, filled, "u", "m")


def _text(*values: str | None) -> np.ndarray:
    return np.array(values, dtype=object)

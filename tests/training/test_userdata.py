"""A user's labelled file for a trained model (training/userdata.py, ``verify --data``)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from example_datasets import digits_folder, penguins_csv
from training_checkpoints import make_checkpoint

from training.checkpoint import Checkpoint, load_checkpoint
from training.data import load_file_data, load_splits
from training.errors import UsageError


@pytest.fixture(scope="module")
def penguins(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Checkpoint]:
    folder = tmp_path_factory.mktemp("penguins")
    path = penguins_csv(folder)
    ckpt = make_checkpoint(
        folder / "c.pt", str(path), "mlp", (8,), label_column="species", missing="mean"
    )
    return path, load_checkpoint(ckpt)


def rewrite(source: Path, target: Path, change) -> Path:  # type: ignore[no-untyped-def]
    with open(source, newline="") as fh:
        rows = list(csv.reader(fh))
    with open(target, "w", newline="") as fh:
        csv.writer(fh).writerows(change(rows))
    return target


def all_rows(ckpt: Checkpoint) -> tuple[np.ndarray, np.ndarray]:
    splits = load_splits(ckpt.data_spec)
    parts = (splits.train, splits.val, splits.test)
    return np.concatenate([p.X for p in parts]), np.concatenate([p.y for p in parts])


def as_set(x: np.ndarray, y: np.ndarray) -> list[tuple[float, ...]]:
    return sorted((*row.tolist(), float(label)) for row, label in zip(x, y, strict=True))


def test_the_training_file_encodes_as_training_did(penguins: tuple[Path, Checkpoint]) -> None:
    path, ckpt = penguins
    x, y = load_file_data(str(path), "species", ckpt)
    assert x.shape == (344, 10) and x.dtype == np.float32
    assert as_set(x, y) == as_set(*all_rows(ckpt))


def test_columns_by_name_in_any_order(penguins: tuple[Path, Checkpoint], tmp_path: Path) -> None:
    path, ckpt = penguins
    moved = rewrite(path, tmp_path / "moved.csv", lambda rows: [[*r[::-1], "extra"] for r in rows])
    x, y = load_file_data(str(moved), "species", ckpt)
    want_x, want_y = load_file_data(str(path), "species", ckpt)
    np.testing.assert_array_equal(x, want_x)
    np.testing.assert_array_equal(y, want_y)


def test_column_names_that_differ_from_the_model_say_so(
    penguins: tuple[Path, Checkpoint], tmp_path: Path
) -> None:
    path, ckpt = penguins

    def rename(rows: list[list[str]]) -> list[list[str]]:
        rows[0] = [h.replace("bill_length_mm", "bill length (mm)") for h in rows[0]]
        return rows

    renamed = rewrite(path, tmp_path / "renamed.csv", rename)
    with pytest.raises(UsageError) as info:
        load_file_data(str(renamed), "species", ckpt)
    message = str(info.value)
    assert message.startswith(
        f"{renamed}: the model's feature 'bill_length_mm' is not a column of the file "
        "(its columns: 'species', 'island', 'bill length (mm)',"
    )
    assert "the model's features are 'island', 'bill_length_mm'" in message


def test_unknown_category_and_missing_without_fill(
    penguins: tuple[Path, Checkpoint], tmp_path: Path
) -> None:
    path, ckpt = penguins

    def atlantis(rows: list[list[str]]) -> list[list[str]]:
        rows[3][1] = "Atlantis"
        return rows

    bad = rewrite(path, tmp_path / "atlantis.csv", atlantis)
    with pytest.raises(UsageError, match="line 4, column 'island': category 'Atlantis' is not one"):
        load_file_data(str(bad), "species", ckpt)
    strict = make_checkpoint(
        tmp_path / "strict.pt", str(path), "mlp", (8,), label_column="species", missing="drop"
    )
    with pytest.raises(UsageError) as info:
        load_file_data(str(path), "species", load_checkpoint(strict))
    assert str(info.value) == (
        f"{path}: line 5, column 'bill_length_mm': missing value; the model has no fill value "
        "for it (trained with --missing drop)"
    )


def test_npz_positional_or_by_name(tmp_path: Path) -> None:
    ckpt = load_checkpoint(make_checkpoint(tmp_path / "w.pt", "wine", "mlp", (8,)))
    splits = load_splits(ckpt.data_spec)
    path = tmp_path / "w.npz"
    np.savez(path, X=splits.test.X, y=splits.test.y)
    x, y = load_file_data(str(path), None, ckpt)
    np.testing.assert_array_equal(x, splits.test.X)
    np.testing.assert_array_equal(y, splits.test.y)
    names = np.array(list(reversed(ckpt.input["feature_names"])))
    named = tmp_path / "named.npz"
    np.savez(named, X=splits.test.X[:, ::-1], y=splits.test.y, feature_names=names)
    np.testing.assert_array_equal(load_file_data(str(named), None, ckpt)[0], splits.test.X)
    wrong = tmp_path / "wrong.npz"
    np.savez(
        wrong,
        X=splits.test.X,
        y=splits.test.y,
        feature_names=np.array([f"f{i}" for i in range(13)]),
    )
    with pytest.raises(UsageError, match="the model's feature 'alcohol' is not a column"):
        load_file_data(str(wrong), None, ckpt)


def test_image_folder_for_an_image_folder_model(tmp_path: Path) -> None:
    root = digits_folder(tmp_path / "digits", scale=2, limit=120)
    ckpt = load_checkpoint(make_checkpoint(tmp_path / "d.pt", str(root), "cnn", (4,)))
    assert ckpt.input["image_files"]["mode"] == "L"
    x, y = load_file_data(str(root), None, ckpt)
    assert x.shape == (120, 1, 16, 16)
    assert as_set(x.reshape(120, -1), y) == as_set(
        *(a.reshape(len(a), -1) if a.ndim > 1 else a for a in all_rows(ckpt))
    )
    digits = load_checkpoint(make_checkpoint(tmp_path / "b.pt", "digits", "cnn", (4,)))
    with pytest.raises(UsageError, match="an image folder needs a model trained on image files"):
        load_file_data(str(root), None, digits)

"""Target-domain data for recalibration (training/target_data.py): labels optional."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from example_datasets import digits_folder, penguins_csv
from training_checkpoints import make_checkpoint

from training.checkpoint import load_checkpoint
from training.data import load_file_data, load_splits
from training.errors import UsageError
from training.target_data import load_target, reload_target


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_csv_without_the_label_column_is_unlabelled(tmp_path: Path) -> None:
    path = penguins_csv(tmp_path)
    ckpt = load_checkpoint(
        make_checkpoint(
            tmp_path / "p.pt", str(path), "mlp", (8,), label_column="species", missing="mean"
        )
    )
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    drop = rows[0].index("species")
    bare = tmp_path / "bare.csv"
    with open(bare, "w", newline="") as fh:
        csv.writer(fh).writerows([r[:drop] + r[drop + 1 :] for r in rows])

    labelled = load_target(path, "species", ckpt)
    unlabelled = load_target(bare, "species", ckpt)  # the checkpoint's column is absent
    want_x, want_y = load_file_data(str(path), "species", ckpt)
    np.testing.assert_array_equal(labelled.x, want_x)
    np.testing.assert_array_equal(labelled.y, want_y)
    np.testing.assert_array_equal(unlabelled.x, want_x)
    assert unlabelled.y is None and unlabelled.label_column is None
    assert (labelled.sha256, unlabelled.sha256) == (sha256(path), sha256(bare))
    assert load_target(path, "species", ckpt, "ignore").y is None
    with pytest.raises(UsageError, match=r"bare.csv: no column 'species'"):
        load_target(bare, "species", ckpt, "require")


def test_npz_without_y_and_a_shape_that_does_not_fit(tmp_path: Path) -> None:
    ckpt = load_checkpoint(make_checkpoint(tmp_path / "d.pt", "digits", "cnn", (4,)))
    test = load_splits(ckpt.data_spec).test
    path = tmp_path / "x.npz"
    np.savez(path, X=test.X[:, 0])  # (N, H, W): one channel
    target = load_target(path, None, ckpt)
    np.testing.assert_array_equal(target.x, test.X)
    assert target.y is None and target.source == "npz" and len(target) == len(test)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, X=test.X[:, :, :6, :6])
    with pytest.raises(UsageError, match=r"wrong.npz: samples of shape \[1, 6, 6\], model needs"):
        load_target(wrong, None, ckpt)
    one = tmp_path / "one.npz"
    np.savez(one, X=test.X[:1])
    with pytest.raises(UsageError, match="1 sample\\(s\\); recalibration needs at least 2"):
        load_target(one, None, ckpt)
    with pytest.raises(UsageError, match="missing array\\(s\\) X"):
        np.savez(tmp_path / "y.npz", y=test.y)
        load_target(tmp_path / "y.npz", None, ckpt)


def test_image_folder_flat_or_by_class(tmp_path: Path) -> None:
    root = digits_folder(tmp_path / "digits", scale=2, limit=60)
    ckpt = load_checkpoint(make_checkpoint(tmp_path / "i.pt", str(root), "cnn", (4,)))
    flat = tmp_path / "flat"
    flat.mkdir()
    for image in sorted(root.glob("*/*.png")):
        shutil.copy(image, flat / f"{image.parent.name}-{image.name}")
    by_class = load_target(root, None, ckpt)
    unlabelled = load_target(flat, None, ckpt)
    assert by_class.y is not None and unlabelled.y is None
    assert unlabelled.source == "images" and len(unlabelled) == 60
    # The same files, in the same (sorted) order: the same tensors.
    np.testing.assert_array_equal(unlabelled.x, by_class.x)
    assert unlabelled.sha256 != by_class.sha256  # the names are hashed too
    (flat / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match=r"notes\.txt: not a \.png, \.jpg or \.jpeg file"):
        load_target(flat, None, ckpt)


def test_reload_checks_the_data_is_unchanged(tmp_path: Path) -> None:
    ckpt = load_checkpoint(make_checkpoint(tmp_path / "w.pt", "wine", "mlp", (8,)))
    path = tmp_path / "w.npz"
    np.savez(path, X=load_splits(ckpt.data_spec).test.X)
    where = load_target(path, None, ckpt).where()
    np.testing.assert_array_equal(reload_target(where, ckpt).x, load_target(path, None, ckpt).x)
    np.savez(path, X=load_splits(ckpt.data_spec).val.X)
    with pytest.raises(UsageError, match="changed since the model was recalibrated"):
        reload_target(where, ckpt)
    path.unlink()
    with pytest.raises(UsageError, match="is gone; recalibrate again"):
        reload_target(where, ckpt)

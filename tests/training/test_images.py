"""Image folders (training/images.py through training/data.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data import load_splits, make_data_spec
from training.errors import UsageError


def make_folder(root: Path, size: tuple[int, int] = (6, 5), mode: str = "L", n: int = 6) -> Path:
    """``root/<class>/<i>.png``: classes 'bird' and 'ant', distinct pixel patterns."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(("bird", "ant")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            pixels = rng.integers(0, 128, shape, dtype=np.uint8) + 127 * c
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def test_gray_folder_classes_sizes_and_scale(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "pics")
    splits = load_splits(make_data_spec(str(root)))
    assert splits.labels == ["ant", "bird"]
    assert splits.kind == "image" and splits.sample_shape == (1, 5, 6)
    files = splits.image_files
    assert files is not None
    assert (files.mode, files.resize, files.scale, files.max_pixels) == ("L", None, 1 / 255, 30)
    # Every training tensor is some file's pixels / 255, and its class is that file's folder.
    want = {
        (folder.name, (np.asarray(Image.open(p), np.float64) / 255).astype(np.float32).tobytes())
        for folder in root.iterdir()
        for p in folder.iterdir()
    }
    for x, y in zip(splits.train.X, splits.train.y, strict=True):
        assert (splits.labels[y], x[0].tobytes()) in want
    assert splits.spec["sha256"] and len(splits.spec["sha256"]) == 64
    assert splits.input_info()["image_files"]["mode"] == "L"


def test_rgb_channels_option_and_resize(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "pics", mode="RGB")
    assert load_splits(make_data_spec(str(root))).sample_shape == (3, 5, 6)
    gray = load_splits(make_data_spec(str(root), channels=1))
    assert gray.sample_shape == (1, 5, 6) and gray.image_files.mode == "L"  # type: ignore[union-attr]
    Image.new("RGB", (9, 4), (10, 20, 30)).save(root / "ant" / "wide.png")
    with pytest.raises(UsageError, match=r"is 6x5 pixels but .*wide.png is 9x4 \(width x height\)"):
        load_splits(make_data_spec(str(root)))
    resized = load_splits(make_data_spec(str(root), image_size=(4, 3)))
    assert resized.sample_shape == (3, 4, 3)
    files = resized.image_files
    assert files is not None and files.resize == "bilinear" and files.max_pixels >= 12
    one = Image.open(root / "ant" / "wide.png").convert("RGB").resize((3, 4), Image.BILINEAR)
    want = (np.asarray(one, np.float64) / 255).astype(np.float32).transpose(2, 0, 1)
    every = np.concatenate([resized.train.X, resized.val.X, resized.test.X])
    assert any(np.array_equal(x, want) for x in every)


def test_labels_order_applies_to_folders(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "pics")
    splits = load_splits(make_data_spec(str(root), labels=["bird", "ant"]))
    assert splits.labels == ["bird", "ant"]
    assert (
        splits.train.X[splits.train.y == 0].mean() < splits.train.X[splits.train.y == 1].mean()
    )  # birds are dark


def test_a_changed_folder_is_noticed(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "pics")
    spec = load_splits(make_data_spec(str(root))).spec
    Image.new("L", (6, 5), 3).save(root / "ant" / "0.png")
    with pytest.raises(UsageError, match="changed since the model was trained"):
        load_splits(spec)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / "ant" / "notes.txt").write_text("x"), "notes.txt: not a .png, .jpg"),
        (lambda r: (r / "ant" / "5.png").write_bytes(b"GIF89a"), "5.png: not a PNG or JPEG image"),
        (lambda r: (r / "empty").mkdir(), "empty: class folder has no images"),
        (lambda r: Image.new("L", (2, 2)).save(r / "loose.png"), "one sub-folder per class"),
        (
            lambda r: Image.fromarray(np.zeros((5, 6), np.uint16)).save(r / "ant" / "0.png"),
            "0.png: pixel format 'I;16' is not supported",
        ),
    ],
)
def test_bad_folders(tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    root = make_folder(tmp_path / "pics")
    damage(root)
    with pytest.raises(UsageError, match=message):
        load_splits(make_data_spec(str(root)))


def test_options_that_do_not_apply(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "pics")
    with pytest.raises(UsageError, match="--features does not apply to an image folder"):
        make_data_spec(str(root), features=["a"])
    with pytest.raises(UsageError, match="--channels does not apply to image folders"):
        make_data_spec("wine", channels=3)
    with pytest.raises(UsageError, match="--missing does not apply to digits"):
        make_data_spec("digits", missing="drop")

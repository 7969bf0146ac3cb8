"""The ``data_spec``: which dataset, which options, which split (stored in the checkpoint).

``make_data_spec`` checks that the source exists and that every option applies
to it (``--image-size`` to an image folder, ``--missing`` to tabular data...),
before anything is read; ``training.data.load_splits`` rebuilds the splits from
the spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.datasets import BUILTIN, file_sha256
from training.errors import UsageError
from training.tabular import MISSING_POLICIES


def make_data_spec(
    dataset: str,
    label_column: str | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    *,
    features: list[str] | None = None,
    categorical: list[str] | None = None,
    missing: str = "error",
    labels: list[str] | None = None,
    channels: int | None = None,
    image_size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The ``data_spec`` for a built-in name, a ``.csv`` / ``.npz`` path or an image folder.

    Checks that the source exists and that the options apply to it.
    """
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise UsageError(
            "--val-fraction and --test-fraction must be in (0, 1) and sum to less than 1"
        )
    if missing not in MISSING_POLICIES:
        raise UsageError(f"--missing must be one of {', '.join(MISSING_POLICIES)}, got {missing!r}")
    spec: dict[str, Any] = {
        "val_fraction": float(val_fraction),
        "test_fraction": float(test_fraction),
        "seed": int(seed),
        "labels": None if labels is None else [str(n) for n in labels],
    }
    tabular = {
        "features": None if features is None else list(features),
        "categorical": list(categorical or []),
        "missing": missing,
    }
    image = {"channels": channels, "image_size": None if image_size is None else list(image_size)}
    path = Path(dataset)
    if path.is_dir() and dataset not in BUILTIN:
        _refuse(tabular, "an image folder")
        return {
            "name": path.resolve().name,
            "source": "images",
            "path": str(path.resolve()),
            "sha256": None,
            **image,
            **spec,
        }
    _refuse(image, "image folders")
    if dataset in BUILTIN:
        if dataset == "digits":
            _refuse(tabular, "digits (images)")
        return {"name": dataset, "source": "sklearn", **tabular, **spec}
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".npz"):
        raise UsageError(
            f"unknown dataset {dataset!r}: use one of {', '.join(BUILTIN)}, "
            "a path to a .csv or .npz file, or an image folder (DIR/<class>/*.png)"
        )
    if not path.is_file():
        raise UsageError(f"dataset file not found: {dataset}")
    return {
        "name": path.stem,
        "source": suffix[1:],
        "path": str(path.resolve()),
        "sha256": file_sha256(path),
        "label_column": label_column if suffix == ".csv" else None,
        **tabular,
        **spec,
    }


_OPTION_NAMES = {
    "features": "--features",
    "categorical": "--categorical",
    "missing": "--missing",
    "channels": "--channels",
    "image_size": "--image-size",
}


def _refuse(options: dict[str, Any], what: str) -> None:
    """A ``UsageError`` for the first option set to other than its default."""
    for key, value in options.items():
        if value not in (None, [], "error"):
            raise UsageError(f"{_OPTION_NAMES[key]} does not apply to {what}")

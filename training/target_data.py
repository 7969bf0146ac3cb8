"""Target-domain data for AdaBN recalibration: a user's file read with a trained model's encoding.

A CSV, an ``.npz`` or an image folder, exactly as ``verify --data`` reads one
(``training.userdata``: the model's feature names, categories, fill values and
image decoding), except that labels are optional: a CSV without the label
column, an ``.npz`` without ``y``, or a folder that holds its images directly
(no class sub-folders) is unlabelled. The data is fingerprinted (SHA-256 of the
file, or of the image folder as training hashes one) for the model card.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from training.datasets import file_sha256
from training.errors import UsageError
from training.userdata import ModelEncoding, load_unlabelled_data

Labels = Literal["auto", "require", "ignore"]
MIN_SAMPLES = 2  # a variance needs two values


@dataclass(frozen=True)
class TargetData:
    """Samples ``x`` (raw, float32, as the model takes them), class ids ``y`` or None."""

    path: Path
    x: np.ndarray
    y: np.ndarray | None
    sha256: str
    source: Literal["csv", "npz", "images"]
    label_column: str | None
    labels: Labels

    def __len__(self) -> int:
        return len(self.x)

    @property
    def name(self) -> str:
        """The file or folder name, as the card's data provenance shows it."""
        return self.path.name

    def where(self) -> dict[str, Any]:
        """How to read this data again (kept in the recalibrated checkpoint)."""
        return {
            "path": str(self.path),
            "label_column": self.label_column,
            "labels": self.labels,
            "sha256": self.sha256,
        }


def load_target(
    path: str | os.PathLike[str],
    label_column: str | None,
    model: ModelEncoding,
    labels: Labels = "auto",
) -> TargetData:
    """Read ``path`` for ``model``; ``labels``: ``auto`` (use them if the data has them),
    ``require`` (an error if it has none) or ``ignore``."""
    source = Path(path).absolute()
    x, y, raw = load_unlabelled_data(
        str(source), label_column, model, ignore_labels=labels == "ignore"
    )
    if labels == "require" and y is None:
        what = f"no column {label_column!r}" if source.suffix.lower() == ".csv" else "no labels"
        raise UsageError(f"{path}: {what}")
    if len(x) < MIN_SAMPLES:
        raise UsageError(f"{path}: {len(x)} sample(s); recalibration needs at least {MIN_SAMPLES}")
    kind: Literal["csv", "npz", "images"]
    if source.is_dir():
        kind, sha = "images", raw.sha256
    else:
        kind, sha = ("csv" if source.suffix.lower() == ".csv" else "npz"), file_sha256(source)
    assert sha is not None
    return TargetData(
        path=source,
        x=x,
        y=y,
        sha256=sha,
        source=kind,
        label_column=label_column if kind == "csv" and y is not None else None,
        labels=labels,
    )


def reload_target(where: dict[str, Any], model: ModelEncoding) -> TargetData:
    """The data a recalibrated checkpoint was recalibrated on, checked unchanged."""
    path = Path(str(where["path"]))
    if not path.exists():
        raise UsageError(f"the recalibration data {path} is gone; recalibrate again")
    column = where.get("label_column")
    mode = str(where.get("labels", "auto"))
    labels: Labels = "require" if mode == "require" else "ignore" if mode == "ignore" else "auto"
    target = load_target(path, None if column is None else str(column), model, labels)
    if target.sha256 != where["sha256"]:
        raise UsageError(f"{path} changed since the model was recalibrated (SHA-256 differs)")
    return target

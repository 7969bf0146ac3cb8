"""Datasets as reproducible stratified train/validation/test splits, and input standardization.

A ``data_spec`` (``training.dataspec``: a small JSON-friendly dict, stored in the
checkpoint) names the source, the data options and the split;
``load_splits(data_spec)`` rebuilds exactly the same arrays from it: missing
values handled per ``--missing``, the label vocabulary (``training.labels``), the
stratified split, then the tabular encoding learned on the training split only
(``training.tabular``). Features come out as float32 in their RAW units (one-hot
columns for categories): the model takes standardized input, so callers apply
``Standardization`` themselves (the export folds it into the first layer instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.model_selection import train_test_split

from bnfold.card import ImageFiles, TabularSpec
from training.datasets import (
    BUILTIN,
    Columns,
    RawData,
    file_sha256,
    read_builtin,
    read_csv,
    read_images,
    read_npz,
)
from training.dataspec import make_data_spec
from training.errors import UsageError
from training.labels import class_ids
from training.tabular import (
    FIX_MISSING,
    describe,
    encode,
    first_missing,
    fit_tabular_spec,
)
from training.userdata import load_file_data

__all__ = [
    "ArraySplit",
    "Splits",
    "Standardization",
    "load_file_data",
    "load_splits",
    "make_data_spec",
]

InputKind = Literal["tabular", "image"]
UNSEEN_CATEGORY = (
    "the categories are learned on the training split: merge rare categories, drop those "
    "rows, or try another --split-seed"
)
# A feature whose spread is below this is treated as constant: dividing by a
# tiny std would turn float noise at test time into huge standardized values.
MIN_STD = 1e-6


@dataclass(frozen=True)
class ArraySplit:
    """One split: features ``X`` (N, *sample_shape) float32, class ids ``y`` (N,) int64."""

    X: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Splits:
    """Train/validation/test splits of one dataset, plus what describes its input."""

    train: ArraySplit
    val: ArraySplit
    test: ArraySplit
    labels: list[str]
    feature_names: list[str] | None
    kind: InputKind
    sample_shape: tuple[int, ...]
    description: str
    spec: dict[str, Any]
    tabular: TabularSpec | None = None  # the encoding, learned on the training split
    image_files: ImageFiles | None = None  # how image files were decoded (image folders)

    def input_info(self) -> dict[str, Any]:
        """The checkpoint's ``input`` entry (see docs/architecture.md)."""
        info: dict[str, Any] = {
            "kind": self.kind,
            "sample_shape": list(self.sample_shape),
            "feature_names": self.feature_names,
            "description": self.description,
        }
        if self.tabular is not None:
            info["tabular"] = self.tabular.model_dump(mode="json")
        if self.image_files is not None:
            info["image_files"] = self.image_files.model_dump(mode="json")
        return info


@dataclass(frozen=True)
class Standardization:
    """``(x - mean) / std`` per feature (tabular) or per channel (images)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardization:
        """Statistics of ``x`` (N, F) or (N, C, H, W); near-constant features get std 1."""
        axes = (0,) if x.ndim == 2 else (0, *range(2, x.ndim))
        x64 = np.asarray(x, dtype=np.float64)
        std = x64.std(axis=axes)
        return cls(mean=x64.mean(axis=axes), std=np.where(std < MIN_STD, 1.0, std))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Standardize a batch (N, F) / (N, C, H, W) or one sample (F,) / (C, H, W); float32."""
        # Tabular samples are 1-D and images 3-D, so the ndim says where the feature axis is.
        shape = (-1,) if x.ndim <= 2 else (-1, 1, 1)
        out = (np.asarray(x, dtype=np.float64) - self.mean.reshape(shape)) / self.std.reshape(shape)
        return out.astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        """The checkpoint's ``standardization`` entry."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Standardization:
        """Inverse of ``to_dict``."""
        mean = np.asarray(data["mean"], dtype=np.float64)
        std = np.asarray(data["std"], dtype=np.float64)
        if mean.shape != std.shape or mean.ndim != 1 or np.any(std <= 0):
            raise UsageError("standardization needs 1-D mean and positive std of equal length")
        return cls(mean=mean, std=std)


def load_splits(data_spec: dict[str, Any]) -> Splits:
    """Read, check, encode and split the dataset that ``data_spec`` names (deterministic).

    Missing values are handled per ``data_spec["missing"]`` and the tabular encoding
    (categories, fill values) is learned on the training split only.
    """
    raw = _read(data_spec)
    policy = str(data_spec.get("missing", "error"))
    table, images, y = raw.table, raw.images, raw.y
    keep = ~_missing_labels(y)
    if not keep.all() and policy != "drop":
        first = int(np.flatnonzero(~keep)[0])
        raise UsageError(f"{raw.where(first)}: missing label; use --missing drop to drop such rows")
    if table is not None:
        if policy == "error" and (cell := first_missing(table)) is not None:
            raise UsageError(f"{cell}: missing value; {FIX_MISSING}")
        if policy == "drop":
            keep &= ~table.missing().any(axis=1)
    rows = np.flatnonzero(keep)
    if not len(rows):
        raise UsageError(
            f"{data_spec.get('path')}: no row is left once rows with missing values are dropped"
        )
    if len(rows) < len(y):
        y = y[rows]
        table = None if table is None else table.take(rows)
        images = None if images is None else images[rows]
    labels, ids = class_ids(
        y, raw.label_names, data_spec.get("labels"), lambda i: raw.where(int(rows[i]))
    )
    train, val, test = _split_index(ids, data_spec, labels)
    tabular = None
    if table is not None:
        tabular = fit_tabular_spec(table.take(train), policy)  # type: ignore[arg-type]
        x = encode(table, tabular, UNSEEN_CATEGORY, FIX_MISSING)
        description = describe(tabular, raw.description)
    else:
        assert images is not None
        x, description = images, raw.description
    spec = dict(data_spec)
    if raw.sha256 is not None:
        spec["sha256"] = raw.sha256
    parts = [ArraySplit(X=x[i].astype(np.float32), y=ids[i]) for i in (train, val, test)]
    return Splits(
        train=parts[0],
        val=parts[1],
        test=parts[2],
        labels=labels,
        feature_names=None if tabular is None else tabular.columns,
        kind="tabular" if tabular is not None else "image",
        sample_shape=tuple(int(d) for d in x.shape[1:]),
        description=description,
        spec=spec,
        tabular=tabular,
        image_files=raw.files,
    )


def _missing_labels(y: np.ndarray) -> np.ndarray:
    if y.dtype == object:
        return np.array([v is None for v in y], dtype=bool)
    if y.dtype.kind == "f":
        return np.isnan(y)
    return np.zeros(len(y), dtype=bool)


def _read(spec: dict[str, Any]) -> RawData:
    source = spec.get("source")
    columns = Columns(
        features=spec.get("features"), categorical=list(spec.get("categorical") or [])
    )
    expected = spec.get("sha256")
    if source == "sklearn":
        if spec.get("name") not in BUILTIN:
            raise UsageError(f"unknown built-in dataset {spec.get('name')!r}")
        raw = read_builtin(str(spec["name"]), columns)
        if expected and raw.sha256 != expected:
            raise UsageError(
                f"scikit-learn's bundled {spec['name']} dataset differs from the one the model "
                "was trained on (SHA-256; another scikit-learn version?)"
            )
        return raw
    if source not in ("csv", "npz", "images"):
        raise UsageError(f"data_spec has unknown source {source!r}")
    path = Path(str(spec.get("path")))
    if source == "images":
        size = spec.get("image_size")
        raw = read_images(
            path, spec.get("channels"), None if size is None else (int(size[0]), int(size[1]))
        )
        if expected and raw.sha256 != expected:
            raise UsageError(f"{path} changed since the model was trained (SHA-256 differs)")
        return raw
    if not path.is_file():
        raise UsageError(f"dataset file not found: {path}")
    if expected and file_sha256(path) != expected:
        raise UsageError(f"{path} changed since the model was trained (SHA-256 differs)")
    if source == "csv":
        return read_csv(path, spec.get("label_column"), columns)
    return read_npz(path, columns)


def _split_index(
    y: np.ndarray, spec: dict[str, Any], labels: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted sample indices of the stratified train, validation and test splits."""
    counts = np.bincount(y, minlength=len(labels))
    if counts.min() < 3:
        rare = labels[int(counts.argmin())]
        raise UsageError(
            f"class {rare!r} has {counts.min()} sample(s); a stratified train/val/test "
            "split needs at least 3 per class"
        )
    val_f, test_f, seed = float(spec["val_fraction"]), float(spec["test_fraction"]), spec["seed"]
    index = np.arange(len(y))
    try:
        rest, test = train_test_split(index, test_size=test_f, stratify=y, random_state=seed)
        train, val = train_test_split(
            rest, test_size=val_f / (1.0 - test_f), stratify=y[rest], random_state=seed
        )
    except ValueError as exc:
        raise UsageError(f"cannot split {len(y)} samples into train/val/test: {exc}") from exc
    return np.sort(train), np.sort(val), np.sort(test)

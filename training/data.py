"""Datasets as reproducible stratified train/validation/test splits, and input standardization.

A ``data_spec`` (a small JSON-friendly dict, stored in the checkpoint) names the
source and the split; ``load_splits(data_spec)`` rebuilds exactly the same
arrays from it. Features come out as float32 in their RAW units: the model
takes standardized input, so callers apply ``Standardization`` themselves (the
export folds it into the first layer instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from sklearn.model_selection import train_test_split

from training.datasets import BUILTIN, RawData, file_sha256, read_builtin, read_csv, read_npz
from training.errors import UsageError

InputKind = Literal["tabular", "image"]
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

    def input_info(self) -> dict[str, Any]:
        """The checkpoint's ``input`` entry (see docs/architecture.md)."""
        return {
            "kind": self.kind,
            "sample_shape": list(self.sample_shape),
            "feature_names": self.feature_names,
            "description": self.description,
        }


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


def make_data_spec(
    dataset: str,
    label_column: str | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> dict[str, Any]:
    """The ``data_spec`` for a built-in name or a ``.csv`` / ``.npz`` path; checks they exist."""
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise UsageError(
            "--val-fraction and --test-fraction must be in (0, 1) and sum to less than 1"
        )
    spec: dict[str, Any] = {
        "val_fraction": float(val_fraction),
        "test_fraction": float(test_fraction),
        "seed": int(seed),
    }
    if dataset in BUILTIN:
        return {"name": dataset, "source": "sklearn", **spec}
    path = Path(dataset)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".npz"):
        raise UsageError(
            f"unknown dataset {dataset!r}: use one of {', '.join(BUILTIN)} "
            "or a path to a .csv or .npz file"
        )
    if not path.is_file():
        raise UsageError(f"dataset file not found: {dataset}")
    return {
        "name": path.stem,
        "source": suffix[1:],
        "path": str(path.resolve()),
        "sha256": file_sha256(path),
        "label_column": label_column if suffix == ".csv" else None,
        **spec,
    }


def load_splits(data_spec: dict[str, Any]) -> Splits:
    """Read, check, encode and split the dataset that ``data_spec`` names (deterministic)."""
    raw = _read(data_spec)
    x, y = raw.x, raw.y
    if len(x) != len(y) or y.ndim != 1:
        raise UsageError(f"{len(x)} samples but labels of shape {list(y.shape)}")
    if not np.all(np.isfinite(x)):
        raise UsageError(f"features contain NaN or infinite values ({_where_bad(x, raw)})")
    if not np.all(np.isfinite(y.astype(np.float64))) or np.any(y != np.round(y)):
        raise UsageError("labels must be integer class ids (found NaN or fractional values)")
    classes, y_ids = np.unique(y.astype(np.int64), return_inverse=True)
    if len(classes) < 2:
        raise UsageError(f"labels hold a single class ({classes[0]}); need at least 2")
    names = raw.label_names or {}
    labels = [names.get(int(c), str(int(c))) for c in classes]
    train, val, test = _stratified_split(x, y_ids, data_spec, labels)
    kind: InputKind = "tabular" if x.ndim == 2 else "image"
    return Splits(
        train=train,
        val=val,
        test=test,
        labels=labels,
        feature_names=raw.feature_names if kind == "tabular" else None,
        kind=kind,
        sample_shape=tuple(int(d) for d in x.shape[1:]),
        description=raw.description,
        spec=dict(data_spec),
    )


class _Labelled(Protocol):
    labels: list[str]
    input: dict[str, Any]


def load_file_data(
    path: str, label_column: str | None, model: _Labelled
) -> tuple[np.ndarray, np.ndarray]:
    """Raw features ``X`` (float32) and class ids ``y`` of a user's .csv/.npz for ``model``.

    ``model`` is a checkpoint (anything with ``labels`` and ``input``). A label
    value maps to the class whose name it spells (``"3"`` -> class named "3"),
    else it is taken as a class id. The sample shape must be the model's.
    """
    spec = make_data_spec(path, label_column)
    raw = _read(spec)
    shape = tuple(int(d) for d in model.input["sample_shape"])
    if tuple(raw.x.shape[1:]) != shape:
        raise UsageError(f"{path}: samples of shape {list(raw.x.shape[1:])}, model needs {shape}")
    if not np.all(np.isfinite(raw.x)):
        raise UsageError(
            f"{path}: features contain NaN or infinite values ({_where_bad(raw.x, raw)})"
        )
    names = {name: i for i, name in enumerate(model.labels)}
    ids = np.empty(len(raw.y), dtype=np.int64)
    for i, value in enumerate(raw.y.tolist()):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if str(value) in names:
            ids[i] = names[str(value)]
        elif isinstance(value, int) and 0 <= value < len(model.labels):
            ids[i] = value
        else:
            raise UsageError(
                f"{path}: label {value!r} (sample {i}) is not one of the model's classes"
            )
    return raw.x.astype(np.float32), ids


def _read(spec: dict[str, Any]) -> RawData:
    source = spec.get("source")
    if source == "sklearn":
        if spec.get("name") not in BUILTIN:
            raise UsageError(f"unknown built-in dataset {spec.get('name')!r}")
        return read_builtin(str(spec["name"]))
    if source not in ("csv", "npz"):
        raise UsageError(f"data_spec has unknown source {source!r}")
    path = Path(str(spec.get("path")))
    if not path.is_file():
        raise UsageError(f"dataset file not found: {path}")
    expected = spec.get("sha256")
    if expected and file_sha256(path) != expected:
        raise UsageError(f"{path} changed since the model was trained (SHA-256 differs)")
    return read_csv(path, spec.get("label_column")) if source == "csv" else read_npz(path)


def _where_bad(x: np.ndarray, raw: RawData) -> str:
    flat = x.reshape(len(x), -1)
    row, col = np.argwhere(~np.isfinite(flat))[0]
    if raw.feature_names:
        return f"feature {raw.feature_names[col]!r}, sample {row}"
    return f"sample {row}, flat index {col}"


def _stratified_split(
    x: np.ndarray, y: np.ndarray, spec: dict[str, Any], labels: list[str]
) -> tuple[ArraySplit, ArraySplit, ArraySplit]:
    counts = np.bincount(y)
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
    return tuple(  # type: ignore[return-value]
        ArraySplit(X=x[i].astype(np.float32), y=y[i].astype(np.int64))
        for i in (np.sort(train), np.sort(val), np.sort(test))
    )

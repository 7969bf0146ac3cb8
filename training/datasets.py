"""Raw dataset sources: scikit-learn's bundled sets, CSV files and ``.npz`` files.

Each reader returns a ``RawData`` (features as float64, labels as given) after
checking what can be checked per source; ``training.data`` does the checks
common to all sources. Every problem is a ``UsageError`` that names it.
"""

from __future__ import annotations

import csv
import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.errors import UsageError

BUILTIN = ("digits", "breast_cancer", "wine")


@dataclass(frozen=True)
class RawData:
    """Features ``x`` (N, ...) float64, labels ``y`` (N,) and how to describe them."""

    x: np.ndarray
    y: np.ndarray
    label_names: dict[int, str] | None
    feature_names: list[str] | None
    description: str


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (used to notice a data file that changed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_builtin(name: str) -> RawData:
    """One of scikit-learn's bundled datasets (no download)."""
    from sklearn import datasets

    if name == "digits":
        bunch = datasets.load_digits()
        return RawData(
            x=np.asarray(bunch.data, dtype=np.float64).reshape(-1, 1, 8, 8),
            y=np.asarray(bunch.target),
            label_names={i: str(n) for i, n in enumerate(bunch.target_names)},
            feature_names=None,
            description="8x8 grayscale handwritten digit, pixel intensities 0..16 "
            "(scikit-learn load_digits)",
        )
    loader = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine}[name]
    bunch = loader()
    return RawData(
        x=np.asarray(bunch.data, dtype=np.float64),
        y=np.asarray(bunch.target),
        label_names={i: str(n) for i, n in enumerate(bunch.target_names)},
        feature_names=[str(f) for f in bunch.feature_names],
        description=f"{len(bunch.feature_names)} numeric features (scikit-learn load_{name})",
    )


def read_csv(path: Path, label_column: str | None) -> RawData:
    """A CSV file with a header row; every column but ``label_column`` is a feature."""
    if not label_column:
        raise UsageError(f"{path}: a CSV dataset needs --label-column NAME")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path}: cannot read CSV: {exc}") from exc
    if len(rows) < 2:
        raise UsageError(f"{path}: needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if label_column not in header:
        raise UsageError(
            f"{path}: no label column {label_column!r}; columns are {', '.join(header)}"
        )
    if len(header) < 2:
        raise UsageError(f"{path}: no feature columns besides {label_column!r}")
    data = rows[1:]
    for line, row in enumerate(data, start=2):
        if len(row) != len(header):
            raise UsageError(f"{path}: line {line} has {len(row)} fields, header has {len(header)}")
    columns = {name: [row[j].strip() for row in data] for j, name in enumerate(header)}
    label = _numeric_column(path, label_column, columns[label_column], what="label column")
    features = [name for name in header if name != label_column]
    x = np.stack([_numeric_column(path, n, columns[n]) for n in features], axis=1)
    return RawData(
        x=x,
        y=label,
        label_names=None,
        feature_names=features,
        description=f"{len(features)} numeric features from {path.name}",
    )


def _numeric_column(path: Path, name: str, cells: list[str], what: str = "column") -> np.ndarray:
    values = np.empty(len(cells), dtype=np.float64)
    for i, cell in enumerate(cells):
        try:
            values[i] = float(cell)
        except ValueError:
            shown = cell if cell else "<empty>"
            raise UsageError(
                f"{path}: {what} {name!r} is not numeric (line {i + 2}: {shown!r})"
            ) from None
    return values


def read_npz(path: Path) -> RawData:
    """An ``.npz`` with ``X`` (N, F) tabular or (N, H, W) / (N, C, H, W) images, and ``y`` (N,).

    Optional arrays: ``labels`` (class names, index = class id) and ``feature_names``.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UsageError(f"{path}: cannot read .npz: {exc}") from exc
    missing = [key for key in ("X", "y") if key not in arrays]
    if missing:
        raise UsageError(f"{path}: missing array(s) {', '.join(missing)} (found {sorted(arrays)})")
    x, y = arrays["X"], arrays["y"]
    if x.dtype.kind not in "biuf":
        raise UsageError(f"{path}: X must be numeric, got dtype {x.dtype}")
    if y.dtype.kind not in "biuf":
        raise UsageError(f"{path}: y (labels) must be numeric, got dtype {y.dtype}")
    if x.ndim not in (2, 3, 4):
        raise UsageError(f"{path}: X must be 2-D, 3-D or 4-D, got shape {list(x.shape)}")
    if x.ndim == 3:
        x = x[:, None, :, :]  # (N, H, W) -> one channel
    names = arrays.get("labels")
    label_names = None if names is None else {i: str(n) for i, n in enumerate(names.tolist())}
    feature_names = None
    if x.ndim == 2:
        given = arrays.get("feature_names")
        count = x.shape[1]
        feature_names = [f"x{i}" for i in range(count)] if given is None else given.tolist()
        if len(feature_names) != count:
            raise UsageError(f"{path}: {len(feature_names)} feature_names for {count} features")
    kind = "numeric features" if x.ndim == 2 else "image"
    return RawData(
        x=np.asarray(x, dtype=np.float64),
        y=np.asarray(y),
        label_names=label_names,
        feature_names=[str(f) for f in feature_names] if feature_names else None,
        description=f"{kind} {list(x.shape[1:])} from {path.name}",
    )

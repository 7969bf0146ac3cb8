"""Raw dataset sources: scikit-learn's bundled sets, CSV files, ``.npz`` files, image folders.

Each reader returns a ``RawData``: tabular rows as a ``training.tabular.Table``
(raw values, missing ones kept) or images as an array, and the labels as given
(integer ids or class names, missing ones kept). ``training.data`` handles
missing values, the label vocabulary, the split and the encoding. Every problem
is a ``UsageError`` naming the file, the line (CSV) or sample (``.npz``) and the
column.

CSV: a header row, then one row per sample; ``label_column`` holds integer class
ids or class names; every other column (or the ``features`` selection) is a
feature, numeric or text (categorical; see ``training.tabular``).

``.npz``: ``X`` (N, F) tabular or (N, H, W) / (N, C, H, W) images, numeric, NaN
where a tabular value is missing; ``y`` (N,) integer class ids or class names.
Optional: ``labels`` (class names, index = class id, when ``y`` holds ids) and
``feature_names`` (F names; else ``x0``, ``x1``, ...).
"""

from __future__ import annotations

import csv
import hashlib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bnfold.card import FLOAT32_MAX, ImageFiles
from training.columns import (
    check_categorical,
    is_missing,
    number_text,
    place,
    select,
    typed_column,
)
from training.errors import UsageError
from training.tabular import Table

BUILTIN = ("digits", "breast_cancer", "wine")


@dataclass(frozen=True)
class Columns:
    """Which columns to read: ``features`` (None: all but the label), which are text.

    ``model``: the names are a trained model's (``verify --data``), not the user's options.
    """

    features: list[str] | None = None
    categorical: list[str] = field(default_factory=list)
    model: bool = False


@dataclass(frozen=True)
class RawData:
    """Features (``table`` or ``images``) and labels ``y`` (ids, or names with None missing)."""

    y: np.ndarray
    label_names: dict[int, str] | None
    description: str
    where: Callable[[int], str]  # names sample i in messages: "data.csv: line 7"
    table: Table | None = None
    images: np.ndarray | None = None
    files: ImageFiles | None = None
    sha256: str | None = None
    labelled: bool = True  # False: the source has no labels (``y`` holds None)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (used to notice a data file that changed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def arrays_sha256(X: np.ndarray, y: np.ndarray) -> str:
    """Hex SHA-256 of a bundled dataset: ``X`` as C-order float64 bytes, then ``y`` as int64."""
    digest = hashlib.sha256(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    return digest.hexdigest()


def read_builtin(name: str, columns: Columns | None = None) -> RawData:
    """One of scikit-learn's bundled datasets (no download)."""
    from sklearn import datasets

    def where(i: int) -> str:
        return place(name, "sample", i)

    if name == "digits":
        bunch = datasets.load_digits()
        return RawData(
            y=np.asarray(bunch.target),
            label_names={i: str(n) for i, n in enumerate(bunch.target_names)},
            description="8x8 grayscale handwritten digit, pixel intensities 0..16 "
            "(scikit-learn load_digits)",
            where=where,
            images=np.asarray(bunch.data, dtype=np.float64).reshape(-1, 1, 8, 8),
            sha256=arrays_sha256(bunch.data, bunch.target),
        )
    loader = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine}[name]
    bunch = loader()
    names = [str(f) for f in bunch.feature_names]
    return RawData(
        y=np.asarray(bunch.target),
        label_names={i: str(n) for i, n in enumerate(bunch.target_names)},
        description=f"scikit-learn load_{name}",
        where=where,
        table=matrix_table(name, np.asarray(bunch.data, np.float64), names, columns or Columns()),
        sha256=arrays_sha256(bunch.data, bunch.target),
    )


def read_csv(
    path: Path,
    label_column: str | None,
    columns: Columns | None = None,
    *,
    unlabelled: bool = False,
) -> RawData:
    """A CSV file with a header row (see the module docstring).

    ``unlabelled``: the file may lack ``label_column`` (or ``label_column`` is None):
    every column is then a feature candidate and the data has no labels.
    """
    columns = columns or Columns()
    source = str(path)
    if not label_column and not unlabelled:
        raise UsageError(f"{path}: a CSV dataset needs --label-column NAME")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            rows, lines, last = [], [], reader.line_num
            for row in reader:
                if row:  # blank lines carry no sample
                    rows.append(row)
                    lines.append(last + 1)
                last = reader.line_num
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path}: cannot read CSV: {exc}") from exc
    if header is None or not rows:
        raise UsageError(f"{path}: needs a header row and at least one data row")
    header = [h.strip() for h in header]
    _check_header(header, source)
    if unlabelled and label_column not in header:
        label_column = None
    elif label_column not in header:
        raise UsageError(
            f"{path}: no label column {label_column!r}; columns are {', '.join(header)}"
        )
    for line, row in zip(lines, rows, strict=True):
        if len(row) != len(header):
            raise UsageError(f"{path}: line {line} has {len(row)} fields, header has {len(header)}")
    features = select(header, label_column, columns.features, source, columns.model)
    if not features:
        raise UsageError(f"{path}: no feature columns besides {label_column!r}")
    check_categorical(columns.categorical, features, source)
    line_numbers = np.asarray(lines, dtype=np.int64)

    def where(i: int, name: str | None = None) -> str:
        return place(source, "line", int(line_numbers[i]), name)

    position = {name: j for j, name in enumerate(header)}

    def cells(name: str) -> list[str]:
        j = position[name]
        return [row[j].strip() for row in rows]

    values = [typed_column(where, n, cells(n), n in columns.categorical) for n in features]
    table = Table(source, "line", line_numbers, features, values)
    if label_column is None:
        return RawData(
            y=np.full(len(rows), None, dtype=object),
            label_names=None,
            description=path.name,
            where=where,
            table=table,
            labelled=False,
        )
    return RawData(
        y=_label_values(cells(label_column)),
        label_names=None,
        description=path.name,
        where=lambda i: where(i, label_column),
        table=table,
    )


def _check_header(header: list[str], source: str) -> None:
    for j, name in enumerate(header):
        if not name:
            raise UsageError(f"{source}: header column {j + 1} has no name")
        if header.count(name) > 1:
            raise UsageError(f"{source}: the header names column {name!r} twice")


def _label_values(cells: list[str]) -> np.ndarray:
    """Numbers (NaN = missing) when every present label is one, else names (None = missing)."""
    try:
        return np.array([np.nan if is_missing(c) else float(c) for c in cells])
    except ValueError:
        return np.array([None if is_missing(c) else c for c in cells], dtype=object)


def matrix_table(source: str, x: np.ndarray, names: list[str], columns: Columns) -> Table:
    """A ``Table`` of numeric columns ``x`` (N, F); NaN is missing, ±inf an error."""
    chosen = select(names, None, columns.features, source, columns.model)
    check_categorical(columns.categorical, chosen, source)
    rows = np.arange(len(x))
    values = []
    for name in chosen:
        column = x[:, names.index(name)]
        bad = np.flatnonzero(np.isinf(column) | (np.abs(column) > FLOAT32_MAX))
        if len(bad):
            raise UsageError(f"{place(source, 'sample', int(bad[0]), name)}: value is not finite")
        if name in columns.categorical:
            text = [None if np.isnan(v) else number_text(v) for v in column.tolist()]
            values.append(np.array(text, dtype=object))
        else:
            values.append(column.astype(np.float64))
    return Table(source, "sample", rows, chosen, values)


def read_npz(path: Path, columns: Columns | None = None, *, unlabelled: bool = False) -> RawData:
    """An ``.npz`` file (see the module docstring for its arrays); ``unlabelled``: ``y``
    may be absent (the data then has no labels)."""
    source = str(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UsageError(f"{path}: cannot read .npz: {exc}") from exc
    labelled = "y" in arrays or not unlabelled
    missing = [key for key in ("X", "y") if key not in arrays and (key == "X" or labelled)]
    if missing:
        raise UsageError(f"{path}: missing array(s) {', '.join(missing)} (found {sorted(arrays)})")
    x = arrays["X"]
    y = arrays["y"] if labelled else np.full(len(x), None, dtype=object)
    if x.dtype.kind not in "biuf":
        raise UsageError(f"{path}: X must be numeric, got dtype {x.dtype}")
    if labelled and (y.dtype.kind not in "biufU" or y.ndim != 1):
        raise UsageError(
            f"{path}: y must be a 1-D array of class ids or names, got {y.dtype} {list(y.shape)}"
        )
    if x.ndim not in (2, 3, 4):
        raise UsageError(f"{path}: X must be 2-D, 3-D or 4-D, got shape {list(x.shape)}")
    if len(x) != len(y):
        raise UsageError(f"{path}: X has {len(x)} samples but y has {len(y)}")
    names = arrays.get("labels")
    label_names = None if names is None else {i: str(n) for i, n in enumerate(names.tolist())}
    labels = y.astype(object) if y.dtype.kind == "U" else y

    def where(i: int) -> str:
        return place(source, "sample", i)

    if x.ndim == 2:
        given = arrays.get("feature_names")
        count = x.shape[1]
        feature_names = [f"x{i}" for i in range(count)] if given is None else given.tolist()
        if given is None and columns and columns.model and count == len(columns.features or []):
            feature_names = list(columns.features or [])  # no names: the model's order
        if len(feature_names) != count:
            raise UsageError(f"{path}: {len(feature_names)} feature_names for {count} features")
        table = matrix_table(
            source, x.astype(np.float64), [str(f) for f in feature_names], columns or Columns()
        )
        return RawData(
            y=labels,
            label_names=label_names,
            description=path.name,
            where=where,
            table=table,
            labelled=labelled,
        )
    if columns and (columns.features or columns.categorical):
        raise UsageError(f"{path}: --features and --categorical apply to tabular data only")
    images = x[:, None, :, :] if x.ndim == 3 else x  # (N, H, W) -> one channel
    images = np.asarray(images, dtype=np.float64)
    bad = np.argwhere(~np.isfinite(images))
    if len(bad):
        n, c, h, w = (int(v) for v in bad[0])
        raise UsageError(f"{where(n)}: pixel (channel {c}, row {h}, column {w}) is not finite")
    return RawData(
        y=labels,
        label_names=label_names,
        description=f"image {list(images.shape[1:])} from {path.name}",
        where=where,
        images=images,
        labelled=labelled,
    )


def read_images(
    root: Path,
    channels: int | None,
    image_size: tuple[int, int] | None,
    model: tuple[ImageFiles, int, int] | None = None,
    *,
    unlabelled: bool = False,
) -> RawData:
    """An image folder ``root/<class>/*.png|jpg|jpeg`` (``training.images``); ``unlabelled``:
    or the images directly in ``root`` (no labels)."""
    from training.images import read_image_folder  # Pillow only when a folder is read

    folder = read_image_folder(root, channels, image_size, model=model, unlabelled=unlabelled)
    files = folder.files
    return RawData(
        labelled=folder.labelled,
        y=folder.y,
        label_names=None,
        description=folder.description,
        where=lambda i: str(files[i]),
        images=folder.x,
        files=folder.decoding,
        sha256=folder.sha256,
    )

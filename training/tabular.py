"""Tabular data as it comes: typed columns with missing values, and their encoding.

A ``Table`` holds the raw feature columns of a CSV or ``.npz`` file: numbers
(float64, NaN where a value is missing) or text (a categorical column; ``None``
where missing). ``fit_tabular_spec`` learns the encoding on the TRAINING rows
only (the categories of each text column, and under ``--missing mean|median``
each feature's fill value) as a ``bnfold.card.TabularSpec``: the card stores it
and the service applies it to a request. ``encode`` turns rows into the model's
float tensor with that spec: one column per numeric feature, one-hot columns per
categorical one (``TabularSpec.columns``).

Every error names the file, the line (CSV) or sample index (``.npz``) and the
column, in the same words for both.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from bnfold.card import FLOAT32_MAX, CategoricalFeature, NumericFeature, TabularSpec
from training.errors import UsageError

# What pandas' readers treat as missing by default (pandas.read_csv's na_values).
MISSING_TOKENS = frozenset(
    {
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    }
)
MISSING_POLICIES = ("error", "drop", "mean", "median")
MissingPolicy = Literal["error", "drop", "mean", "median"]
FIX_MISSING = "use --missing drop (drop such rows) or --missing mean|median (fill them)"


@dataclass(frozen=True)
class Table:
    """Raw feature columns; ``rows[i]`` is row i's line number (CSV) or sample index (npz)."""

    source: str
    row_word: Literal["line", "sample"]
    rows: np.ndarray
    names: list[str]
    values: list[np.ndarray]  # float64 (NaN = missing) or object arrays of str | None

    def __len__(self) -> int:
        return len(self.rows)

    def where(self, i: int, name: str | None = None) -> str:
        """``data.csv: line 7, column 'island'``: where row ``i`` (and a column) is."""
        return place(self.source, self.row_word, int(self.rows[i]), name)

    def is_text(self, j: int) -> bool:
        """Whether column ``j`` holds text (a categorical feature)."""
        return self.values[j].dtype == object

    def missing(self) -> np.ndarray:
        """(N, F) bool: which cells are missing."""
        if not self.names:
            return np.zeros((len(self), 0), dtype=bool)
        return np.stack([_missing(v) for v in self.values], axis=1)

    def take(self, index: np.ndarray) -> Table:
        """The rows ``index`` of this table."""
        return Table(
            self.source,
            self.row_word,
            self.rows[index],
            self.names,
            [v[index] for v in self.values],
        )

    def column(self, name: str) -> np.ndarray:
        """The values of the column called ``name``."""
        return self.values[self.names.index(name)]


def place(source: str, row_word: str, row: int, name: str | None = None) -> str:
    """``data.csv: line 7, column 'island'`` or ``data.npz: sample 5, column 'x2'``."""
    text = f"{source}: {row_word} {row}"
    return text if name is None else f"{text}, column {name!r}"


def _missing(values: np.ndarray) -> np.ndarray:
    if values.dtype == object:
        return np.array([v is None for v in values], dtype=bool)
    return np.isnan(values)


def is_missing(cell: str) -> bool:
    """Whether a CSV cell (already stripped) stands for a missing value."""
    return cell in MISSING_TOKENS


def number_text(value: float) -> str:
    """How a number reads as a category: ``3.0`` -> ``"3"``, ``2.5`` -> ``"2.5"``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def text_column(cells: list[str]) -> np.ndarray:
    """A text column from CSV cells; missing cells become ``None``."""
    return np.array([None if is_missing(c) else c for c in cells], dtype=object)


def typed_column(
    where: Callable[[int, str], str], name: str, cells: list[str], text: bool
) -> np.ndarray:
    """A CSV column as numbers when every present cell is one, else as text.

    A column where some present cells are numbers and others are not is an error
    naming the first odd cell: it is most often a typo or an unlisted missing-value
    marker, and ``--categorical NAME`` says it really is text.
    """
    if text:
        return text_column(cells)
    values = np.full(len(cells), np.nan)
    numbers, words = [], []
    for i, cell in enumerate(cells):
        if is_missing(cell):
            continue
        try:
            values[i] = float(cell)
            numbers.append(i)
        except ValueError:
            words.append(i)
    if not words:
        bad = np.flatnonzero(np.isinf(values) | (np.abs(values) > FLOAT32_MAX))
        if len(bad):
            raise UsageError(f"{where(int(bad[0]), name)}: {cells[bad[0]]!r} is not finite")
        return values
    if not numbers:
        return text_column(cells)
    odd = words[0] if len(words) <= len(numbers) else numbers[0]
    kind = "a number" if odd in numbers else "not a number"
    raise UsageError(
        f"{where(odd, name)}: {cells[odd]!r} is {kind}, unlike the column's other values; "
        f"fix the cell, or pass --categorical {name} to read the column as text"
    )


def select(
    header: list[str], label: str | None, features: list[str] | None, source: str, model: bool
) -> list[str]:
    """The feature columns: ``features`` in that order, or every column but the label.

    ``model``: the names are a trained model's features (``verify --data``), which
    the file must have.
    """
    if features is None:
        return [name for name in header if name != label]
    absent = [name for name in features if name not in header]
    if absent:
        what = "the model's feature" if model else "--features names"
        model_names = f"; the model's features are {_names(features)}" if model else ""
        raise UsageError(
            f"{source}: {what} {absent[0]!r} is not a column of the file "
            f"(its columns: {_names(header)}){model_names}"
        )
    if label is not None and label in features:
        raise UsageError(f"{source}: the label column {label!r} cannot also be a feature")
    if len(set(features)) != len(features):
        raise UsageError(f"--features lists a column twice: {_names(features)}")
    return list(features)


def _names(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def check_categorical(categorical: list[str], features: list[str], source: str) -> None:
    """Every ``--categorical`` name must be one of the features."""
    unknown = [name for name in categorical if name not in features]
    if unknown:
        raise UsageError(
            f"{source}: --categorical names {unknown[0]!r}, which is not a feature column "
            f"(features: {_names(features)})"
        )


def first_missing(table: Table) -> str | None:
    """``where`` of the first missing cell in file order, or None."""
    mask = table.missing()
    hits = np.argwhere(mask)
    if not len(hits):
        return None
    i, j = (int(v) for v in hits[0])
    return table.where(i, table.names[j])


def fit_tabular_spec(train: Table, missing: MissingPolicy) -> TabularSpec:
    """Categories and fill values learned on the training rows ``train``.

    Under ``mean``/``median`` a numeric feature is filled with the mean/median of its
    present training values, and a categorical one with its most frequent training
    category (ties: the first in sorted order).
    """
    fill = missing in ("mean", "median")
    features: list[NumericFeature | CategoricalFeature] = []
    for name, values in zip(train.names, train.values, strict=True):
        if values.dtype == object:
            present = [v for v in values if v is not None]
            if not present:
                raise UsageError(
                    f"{train.source}: column {name!r} has no value in the training split"
                )
            counts = Counter(present)
            categories = sorted(counts)
            mode = max(categories, key=lambda c: counts[c])  # max keeps the first of ties
            features.append(
                CategoricalFeature(name=name, categories=categories, fill=mode if fill else None)
            )
            continue
        present_values = values[~np.isnan(values)]
        value = None
        if fill:
            if not len(present_values):
                raise UsageError(
                    f"{train.source}: column {name!r} has no value in the training split "
                    f"to take the {missing} of"
                )
            reduce = np.mean if missing == "mean" else np.median
            value = float(reduce(present_values))
        features.append(NumericFeature(name=name, fill=value))
    return TabularSpec(features=features, missing=missing)


def encode(table: Table, spec: TabularSpec, unknown_hint: str, missing_hint: str) -> np.ndarray:
    """``(N, len(spec.columns))`` float64: numeric features as they are (missing ones
    filled), categorical ones one-hot. ``table`` must have every feature of ``spec``.

    A missing value without a fill, or a category not in the spec, is an error naming
    the cell; ``unknown_hint`` and ``missing_hint`` end those messages.
    """
    out = np.zeros((len(table), len(spec.columns)), dtype=np.float64)
    col = 0
    for feature in spec.features:
        values = table.column(feature.name)
        if isinstance(feature, NumericFeature):
            out[:, col] = _numeric(table, feature, values, missing_hint)
            col += 1
            continue
        index = {c: k for k, c in enumerate(feature.categories)}
        for i, value in enumerate(_texts(values)):
            if value is None:
                if feature.fill is None:
                    raise UsageError(
                        f"{table.where(i, feature.name)}: missing value; {missing_hint}"
                    )
                value = feature.fill
            k = index.get(value)
            if k is None:
                raise UsageError(
                    f"{table.where(i, feature.name)}: category {value!r} is not one of "
                    f"{_names(feature.categories)}; {unknown_hint}"
                )
            out[i, col + k] = 1.0
        col += len(feature.categories)
    return out


def _numeric(table: Table, feature: NumericFeature, values: np.ndarray, hint: str) -> np.ndarray:
    if values.dtype == object:  # a file whose column is text where the model has numbers
        numbers = np.full(len(values), np.nan)
        for i, v in enumerate(values):
            if v is None:
                continue
            try:
                numbers[i] = float(v)
            except ValueError:
                raise UsageError(
                    f"{table.where(i, feature.name)}: {v!r} is not a number "
                    "(the feature is numeric)"
                ) from None
        values = numbers
    missing = np.isnan(values)
    if missing.any():
        if feature.fill is None:
            i = int(np.flatnonzero(missing)[0])
            raise UsageError(f"{table.where(i, feature.name)}: missing value; {hint}")
        values = np.where(missing, feature.fill, values)
    return values


def _texts(values: np.ndarray) -> list[str | None]:
    if values.dtype == object:
        return list(values)
    return [None if math.isnan(v) else number_text(v) for v in values.tolist()]


def describe(spec: TabularSpec, source: str) -> str:
    """``4 numeric and 2 categorical features (island, sex) from penguins.csv``."""
    text = [f.name for f in spec.features if isinstance(f, CategoricalFeature)]
    numeric = len(spec.features) - len(text)
    if not text:
        return f"{numeric} numeric features from {source}"
    return (
        f"{numeric} numeric and {len(text)} categorical features ({', '.join(text)}) "
        f"from {source}; categorical ones one-hot encoded"
    )


def model_tabular_spec(info: dict[str, Any]) -> TabularSpec:
    """The tabular encoding of a checkpoint's ``input`` entry (older ones: numeric only)."""
    if info.get("tabular"):
        return TabularSpec.model_validate(info["tabular"])
    count = int(info["sample_shape"][0])
    names = info.get("feature_names") or [f"x{i}" for i in range(count)]
    return TabularSpec(features=[NumericFeature(name=str(n)) for n in names])

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
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from bnfold.card import CategoricalFeature, NumericFeature, TabularSpec
from training.columns import names_text, number_text, place
from training.errors import UsageError

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


def _missing(values: np.ndarray) -> np.ndarray:
    if values.dtype == object:
        return np.array([v is None for v in values], dtype=bool)
    return np.isnan(values)


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
                    f"{names_text(feature.categories)}; {unknown_hint}"
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

"""Reading tabular columns: missing-value markers, numbers or text, column selection.

A CSV cell is missing when it is one of ``MISSING_TOKENS`` (what pandas' readers
treat as missing). A column is numeric when every present cell is a number, text
(categorical) when none is, and an error naming the odd cell when mixed. Messages
say where: ``data.csv: line 7, column 'island'`` (``sample 5`` for an ``.npz``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bnfold.card import FLOAT32_MAX
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


def place(source: str, row_word: str, row: int, name: str | None = None) -> str:
    """``data.csv: line 7, column 'island'`` or ``data.npz: sample 5, column 'x2'``."""
    text = f"{source}: {row_word} {row}"
    return text if name is None else f"{text}, column {name!r}"


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
        model_names = f"; the model's features are {names_text(features)}" if model else ""
        raise UsageError(
            f"{source}: {what} {absent[0]!r} is not a column of the file "
            f"(its columns: {names_text(header)}){model_names}"
        )
    if label is not None and label in features:
        raise UsageError(f"{source}: the label column {label!r} cannot also be a feature")
    if len(set(features)) != len(features):
        raise UsageError(f"--features lists a column twice: {names_text(features)}")
    return list(features)


def names_text(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def check_categorical(categorical: list[str], features: list[str], source: str) -> None:
    """Every ``--categorical`` name must be one of the features."""
    unknown = [name for name in categorical if name not in features]
    if unknown:
        raise UsageError(
            f"{source}: --categorical names {unknown[0]!r}, which is not a feature column "
            f"(features: {names_text(features)})"
        )

"""Label vocabulary and class ids (training/labels.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.errors import UsageError
from training.labels import class_ids, parse_labels_option


def where(i: int) -> str:
    return f"f.csv: line {i + 2}, column 'y'"


def test_names_are_sorted_and_ids_keep_numeric_order() -> None:
    labels, ids = class_ids(np.array(["b", "a", "c", "a"], dtype=object), None, None, where)
    assert labels == ["a", "b", "c"] and ids.tolist() == [1, 0, 2, 0]
    labels, ids = class_ids(np.array([10, 2, 2, 10.0]), None, None, where)
    assert labels == ["2", "10"] and ids.tolist() == [1, 0, 0, 1]  # numeric, not text, order
    labels, ids = class_ids(np.array([1, 0, 1]), {0: "malignant", 1: "benign"}, None, where)
    assert labels == ["malignant", "benign"] and ids.tolist() == [1, 0, 1]


def test_given_order_wins_and_is_checked() -> None:
    y = np.array(["b", "a", "c"], dtype=object)
    labels, ids = class_ids(y, None, ["c", "b", "a"], where)
    assert labels == ["c", "b", "a"] and ids.tolist() == [1, 2, 0]
    with pytest.raises(UsageError, match="line 4, column 'y': label 'c' is not one of"):
        class_ids(y, None, ["a", "b"], where)
    with pytest.raises(UsageError, match="--labels names 'd', which no sample has"):
        class_ids(y, None, ["a", "b", "c", "d"], where)
    with pytest.raises(UsageError, match="line 3, column 'y': labels must be integer class ids"):
        class_ids(np.array([1.0, 0.5]), None, None, where)
    with pytest.raises(UsageError, match="single class"):
        class_ids(np.array(["a", "a"], dtype=object), None, None, where)


def test_labels_option_from_text_or_file(tmp_path: Path) -> None:
    assert parse_labels_option(None) is None
    assert parse_labels_option(" Adelie, Gentoo ,Chinstrap") == ["Adelie", "Gentoo", "Chinstrap"]
    path = tmp_path / "labels.txt"
    path.write_text("\ufeffcat\n\ndog\n emu \n")
    assert parse_labels_option(str(path)) == ["cat", "dog", "emu"]
    for text, message in [
        ("a,,b", "empty name"),
        ("a,b,a", "'a' twice"),
        ("a", "at least 2"),
        (str(tmp_path / "absent.txt"), "cannot read"),
    ]:
        with pytest.raises(UsageError, match=message):
            parse_labels_option(text)

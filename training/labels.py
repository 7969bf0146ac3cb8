"""Class labels: integer ids or class names -> the label vocabulary and class ids.

Labels given as integer ids (scikit-learn, a numeric CSV column, an ``.npz`` ``y``)
keep their numeric order; their names come from the source (``target_names``, an
``.npz`` ``labels`` array) or are the ids as text. Labels given as names (a text
CSV column, a string ``y``, image folder names) are sorted. ``--labels a,b,c``
(or a file with one label per line) sets the order instead: class ``i`` is its
``i``-th name, and every sample's label must be one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from training.errors import UsageError


def parse_labels_option(text: str | None) -> list[str] | None:
    """``--labels``: ``a,b,c``, or the path of a text file with one label per line."""
    if text is None:
        return None
    path = Path(text)
    if "," not in text and (path.is_file() or path.suffix.lower() == ".txt"):
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--labels: cannot read {path}: {exc}") from None
        names = [line.strip() for line in lines if line.strip()]
    else:
        names = [part.strip() for part in text.split(",")]
    if any(not name for name in names):
        raise UsageError("--labels has an empty name")
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise UsageError(f"--labels names {twice!r} twice")
    if len(names) < 2:
        raise UsageError(f"--labels needs at least 2 class names, got {len(names)}")
    return names


def class_ids(
    y: np.ndarray,
    names: dict[int, str] | None,
    order: list[str] | None,
    where: Callable[[int], str],
) -> tuple[list[str], np.ndarray]:
    """The label vocabulary and each sample's class id (int64) for raw labels ``y``.

    ``where(i)`` names sample ``i`` in messages (``data.csv: line 7``).
    """
    if y.dtype.kind in "biuf":
        numbers = y.astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(numbers) | (numbers != np.round(numbers)))
        if len(bad):
            raise UsageError(
                f"{where(int(bad[0]))}: labels must be integer class ids or class names "
                "(found NaN or fractional values)"
            )
        ids = numbers.astype(np.int64)
        given = names or {}
        classes = np.unique(ids)
        text = np.array([given.get(int(c), str(int(c))) for c in classes], dtype=object)
        sample_names = text[np.searchsorted(classes, ids)]
        default = list(text)
    else:
        sample_names = np.array([str(v) for v in y], dtype=object)
        default = sorted(set(sample_names))
    labels = default if order is None else list(order)
    index = {name: i for i, name in enumerate(labels)}
    out = np.empty(len(sample_names), dtype=np.int64)
    for i, name in enumerate(sample_names):
        k = index.get(name)
        if k is None:
            raise UsageError(
                f"{where(i)}: label {name!r} is not one of --labels ({', '.join(labels)})"
            )
        out[i] = k
    if order is not None:
        unused = [name for name in labels if name not in set(sample_names)]
        if unused:
            raise UsageError(f"--labels names {unused[0]!r}, which no sample has")
    if len(labels) < 2:
        raise UsageError(f"labels hold a single class ({labels[0]!r}); need at least 2")
    return labels, out

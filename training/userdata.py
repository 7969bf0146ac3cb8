"""A user's own labelled file, encoded for an already trained model (``verify --data``).

The file is read with the MODEL's encoding, never a new one: a tabular file must
have a column for every feature of the model (by name; extra columns are
ignored; an ``.npz`` without ``feature_names`` is taken in the model's feature
order), its text columns must hold the model's categories, and a missing value
is filled only where the model has a fill value. An image folder is decoded as
the model's card says. Labels map to the model's classes by name, else as
class ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bnfold.card import CategoricalFeature, ImageFiles
from training.datasets import Columns, RawData, read_csv, read_images, read_npz
from training.errors import UsageError
from training.tabular import encode, model_tabular_spec


class _Labelled(Protocol):
    labels: list[str]
    input: dict[str, Any]


def load_file_data(
    path: str, label_column: str | None, model: _Labelled
) -> tuple[np.ndarray, np.ndarray]:
    """Raw features ``X`` (float32, encoded as the model takes them) and class ids ``y``.

    ``model`` is a checkpoint (anything with ``labels`` and ``input``).
    """
    info = model.input
    source = Path(path)
    shape = tuple(int(d) for d in info["sample_shape"])
    kind = info.get("kind", "tabular" if len(shape) == 1 else "image")
    if source.is_dir():
        files = info.get("image_files")
        if kind != "image" or not files:
            raise UsageError(f"{path}: an image folder needs a model trained on image files")
        raw = read_images(source, None, None, model=(ImageFiles(**files), shape[1], shape[2]))
        x = raw.images
    elif source.suffix.lower() not in (".csv", ".npz"):
        raise UsageError(f"{path}: use a .csv or .npz file, or an image folder")
    elif not source.is_file():
        raise UsageError(f"data file not found: {path}")
    elif kind == "tabular":
        spec = model_tabular_spec(info)
        columns = Columns(
            features=[f.name for f in spec.features],
            categorical=[f.name for f in spec.features if isinstance(f, CategoricalFeature)],
            model=True,
        )
        if source.suffix.lower() == ".csv":
            raw = read_csv(source, label_column, columns)
        else:
            raw = read_npz(source, columns)
        assert raw.table is not None
        unknown = "the model knows only these (its training split's)"
        missing = f"the model has no fill value for it (trained with --missing {spec.missing})"
        x = encode(raw.table, spec, unknown, missing)
    else:
        if source.suffix.lower() != ".npz":
            raise UsageError(f"{path}: an image model takes an .npz file or an image folder")
        raw = read_npz(source)
        x = raw.images
    if x is None or tuple(x.shape[1:]) != shape:
        got = "tabular rows" if x is None else f"samples of shape {list(x.shape[1:])}"
        raise UsageError(f"{path}: {got}, model needs {list(shape)}")
    return x.astype(np.float32), _class_ids(raw, model.labels, path)


def _class_ids(raw: RawData, labels: list[str], path: str) -> np.ndarray:
    names = {name: i for i, name in enumerate(labels)}
    given = raw.label_names or {}
    ids = np.empty(len(raw.y), dtype=np.int64)
    for i, value in enumerate(raw.y.tolist()):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            raise UsageError(f"{raw.where(i)}: missing label")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        name = given.get(value, str(value)) if isinstance(value, int) else str(value)
        if name in names:
            ids[i] = names[name]
        elif isinstance(value, int) and 0 <= value < len(labels):
            ids[i] = value
        else:
            raise UsageError(f"{raw.where(i)}: label {value!r} is not one of the model's classes")
    return ids

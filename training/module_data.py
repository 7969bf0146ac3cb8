"""The samples a user's module is folded, checked and verified on.

``SampleSet`` holds raw inputs (what the exported model takes) and, optionally,
their class ids. It comes from an ``.npz`` (``read_samples``: ``X`` required,
``y`` optional as class ids or label names, ``feature_names`` optional), from
arrays given to ``training.export_model`` (``as_samples``), or, when the user
has no data, from a seeded random generator (``synthetic_samples``).
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.datasets import file_sha256
from training.errors import UsageError

SYNTHETIC_SAMPLES = 256


@dataclass(frozen=True)
class SampleSet:
    """Raw inputs ``x`` (N, *sample_shape) float32 and class ids ``y`` (N,) or None."""

    x: np.ndarray
    y: np.ndarray | None
    name: str
    sha256: str | None = None
    feature_names: list[str] | None = None

    def __len__(self) -> int:
        return len(self.x)


def checked(
    x: np.ndarray,
    y: np.ndarray | None,
    sample_shape: tuple[int, ...],
    labels: Sequence[str],
    where: str,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``x`` as float32 of the model's sample shape, ``y`` as class ids; ``UsageError`` else."""
    if x.dtype.kind not in "biuf":
        raise UsageError(f"{where}: inputs must be numeric, got dtype {x.dtype}")
    if x.ndim == len(sample_shape) and sample_shape[0] == 1 and len(sample_shape) == 3:
        x = x[:, None]  # (N, H, W) grayscale images
    if x.ndim < 1 or tuple(x.shape[1:]) != tuple(sample_shape):
        raise UsageError(
            f"{where}: samples of shape {list(x.shape[1:])}, the model takes {list(sample_shape)}"
        )
    if len(x) < 2:
        raise UsageError(f"{where}: {len(x)} sample(s); at least 2 are needed to verify on")
    with np.errstate(over="ignore"):  # beyond float32 range becomes inf: reported below
        x32 = np.asarray(x, dtype=np.float32)
    bad = ~np.isfinite(x32.reshape(len(x32), -1)).all(axis=1)
    if bad.any():
        index = int(np.argmax(bad))
        finite = bool(np.isfinite(np.asarray(x[index], dtype=np.float64)).all())
        what = "values beyond float32 range" if finite else "NaN or infinite values"
        raise UsageError(f"{where}: sample {index} holds {what}")
    ids = None if y is None else class_ids(np.asarray(y), labels, where, len(x))
    return x32, ids


def class_ids(y: np.ndarray, labels: Sequence[str], where: str, count: int) -> np.ndarray:
    """Labels given as class ids or as label names -> class ids (N,) int64."""
    if y.shape != (count,):
        raise UsageError(f"{where}: y has shape {list(y.shape)}, expected [{count}]")
    names = {name: i for i, name in enumerate(labels)}
    ids = np.empty(count, dtype=np.int64)
    for i, value in enumerate(y.tolist()):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, str) and value in names:
            ids[i] = names[value]
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(labels):
            ids[i] = value
        else:
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
            raise UsageError(
                f"{where}: label {shown} (sample {i}) is neither a class id 0..{len(labels) - 1} "
                "nor one of the labels"
            )
    return ids


def read_samples(
    path: str | Path, sample_shape: tuple[int, ...], labels: Sequence[str]
) -> SampleSet:
    """An ``.npz`` with ``X`` (N, *sample_shape), optional ``y`` and ``feature_names``."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"data file not found: {path}")
    if path.suffix.lower() != ".npz":
        raise UsageError(f"{path}: --data must be an .npz file with an array X")
    try:
        # Our own handle: np.load leaks its file when the zip is corrupt.
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UsageError(f"{path}: cannot read .npz ({exc})") from None
    if "X" not in arrays:
        raise UsageError(f"{path}: no array X (found {', '.join(sorted(arrays)) or 'none'})")
    x, y = checked(arrays["X"], arrays.get("y"), sample_shape, labels, str(path))
    names = arrays.get("feature_names")
    feature_names = None if names is None else [str(n) for n in names.tolist()]
    if feature_names is not None and (len(sample_shape) != 1 or len(feature_names) != x.shape[1]):
        raise UsageError(
            f"{path}: {len(feature_names)} feature_names for samples of shape {list(sample_shape)}"
        )
    return SampleSet(x, y, path.name, file_sha256(path), feature_names)


def as_samples(
    data: Any, sample_shape: tuple[int, ...], labels: Sequence[str], name: str = "data"
) -> SampleSet:
    """``data`` given to ``export_model``: a ``SampleSet``, an array ``X`` or a pair ``(X, y)``."""
    if isinstance(data, SampleSet):
        x, y = checked(data.x, data.y, sample_shape, labels, data.name)
        return SampleSet(x, y, data.name, data.sha256, data.feature_names)
    y = None
    if isinstance(data, tuple | list) and len(data) == 2:
        data, y = data
        y = None if y is None else _numpy(y)
    x, ids = checked(_numpy(data), y, sample_shape, labels, name)
    return SampleSet(x, ids, name, hashlib.sha256(x.tobytes()).hexdigest())


def first(samples: SampleSet, count: int) -> SampleSet:
    """The first ``count`` samples (at least 2)."""
    n = max(2, count)
    y = None if samples.y is None else samples.y[:n]
    return SampleSet(samples.x[:n], y, samples.name, samples.sha256, samples.feature_names)


def synthetic_inputs(
    sample_shape: tuple[int, ...],
    pixel_scale: float | None,
    standardization: tuple[Any, Any] | None,
    count: int = SYNTHETIC_SAMPLES,
    seed: int = 0,
) -> SampleSet:
    """Seeded random raw inputs for a module without data: pixels uniform in
    ``[0, 255 x pixel_scale)`` for an image model that decodes files, else
    ``mean + std x N(0, 1)`` per channel (``N(0, 1)`` without a standardization).

    The same arguments give the same samples, so ``verify`` re-creates what
    ``export-module`` checked on.
    """
    rng = np.random.default_rng(seed)
    shape = (count, *sample_shape)
    if pixel_scale is not None:
        x = rng.uniform(0.0, 255.0 * pixel_scale, size=shape)
    else:
        mean, std = standardization if standardization is not None else (0.0, 1.0)
        view = (1, -1) + (1,) * (len(sample_shape) - 1)
        m = np.atleast_1d(np.asarray(mean, dtype=np.float64)).reshape(view)
        s = np.atleast_1d(np.asarray(std, dtype=np.float64)).reshape(view)
        x = m + s * rng.standard_normal(shape)
    return SampleSet(x.astype(np.float32), None, "random")


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    return np.asarray(value)

"""What ``training.export_model`` is given, checked: one-line ``UsageError`` naming the problem.

No torch here: tensors are taken as anything ``numpy.asarray`` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from bnfold.card import ImageFiles
from training.errors import UsageError

Kind = Literal["image", "tabular"]
Resize = Literal["bilinear", "nearest", "bicubic", "lanczos"]


def as_batch(value: Any, what: str) -> np.ndarray:
    """A batch ``(N, F)`` or ``(N, C, H, W)`` as a numpy array."""
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.ndim not in (2, 4):
        raise UsageError(
            f"{what} must be a batch (N, F) or (N, C, H, W), got shape {list(array.shape)}"
        )
    return array


def input_kind(kind: Kind | None, sample_shape: tuple[int, ...]) -> Kind:
    """The kind the sample shape makes; ``kind``, if given, must agree."""
    inferred: Kind = "tabular" if len(sample_shape) == 1 else "image"
    if kind is not None and kind != inferred:
        raise UsageError(
            f"kind {kind!r} needs samples of shape {'(F,)' if kind == 'tabular' else '(C, H, W)'}, "
            f"got {list(sample_shape)}"
        )
    return inferred


def checked_labels(labels: Sequence[str]) -> list[str]:
    """At least 2 unique, non-empty class names."""
    if isinstance(labels, str):
        raise UsageError("labels must be a list of class names, not one string")
    out = [str(label) for label in labels]
    if len(out) < 2:
        raise UsageError(f"a classifier needs at least 2 labels, got {len(out)}")
    if any(not label.strip() for label in out):
        raise UsageError("labels must not be empty")
    seen: set[str] = set()
    for label in out:
        if label in seen:
            raise UsageError(f"label {label!r} is given twice")
        seen.add(label)
    return out


def checked_standardization(
    value: tuple[Any, Any] | None, sample_shape: tuple[int, ...], kind: str
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(mean, std)`` as float32 arrays of one value per channel/feature (one given: for all)."""
    if value is None:
        return None, None
    try:
        mean_in, std_in = value
    except (TypeError, ValueError):
        raise UsageError("standardization must be a pair (mean, std)") from None
    mean = np.atleast_1d(np.asarray(mean_in, dtype=np.float64)).ravel()
    std = np.atleast_1d(np.asarray(std_in, dtype=np.float64)).ravel()
    channels = sample_shape[0]
    what = "channel" if kind == "image" else "feature"
    for label, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, channels):
            raise UsageError(
                f"{label} has {len(values)} values; the input has {channels} {what}s "
                f"(give one per {what}, or one for all)"
            )
        if not np.isfinite(values).all():
            raise UsageError(f"{label} values must be finite")
    if (std <= 0).any():
        raise UsageError("std values must be positive")
    return (
        np.broadcast_to(mean, (channels,)).astype(np.float32),
        np.broadcast_to(std, (channels,)).astype(np.float32),
    )


def checked_feature_names(
    names: Sequence[str] | None, sample_shape: tuple[int, ...], kind: Kind
) -> list[str] | None:
    """Tabular: unique names, one per feature (default ``x0, x1, ...``); images: None."""
    if kind != "tabular":
        if names:
            raise UsageError("feature names are for tabular models (samples of shape (F,))")
        return None
    count = sample_shape[0]
    out = [str(n) for n in names] if names else [f"x{i}" for i in range(count)]
    if len(out) != count:
        raise UsageError(f"{len(out)} feature names for {count} features")
    if len(set(out)) != len(out):
        raise UsageError("feature names must be unique")
    return out


def image_files(
    scale: float | None, resize: Resize | None, sample_shape: tuple[int, ...], kind: Kind
) -> ImageFiles | None:
    """How the service decodes an uploaded file for this input, or None (tensors only)."""
    if kind != "image" or scale is None or sample_shape[0] not in (1, 3):
        return None  # image files decode to 1 (L) or 3 (RGB) channels only
    if not (np.isfinite(scale) and scale > 0):
        raise UsageError(f"pixel scale must be positive, got {scale}")
    return ImageFiles(mode="L" if sample_shape[0] == 1 else "RGB", resize=resize, scale=scale)

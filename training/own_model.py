"""``export_model``: any BatchNorm ``nn.Module`` -> folded, carded, verified ONNX run folder.

The same run-folder files as ``python -m training export`` + ``verify``
(``model.onnx`` with its sealed card, ``card.json``, ``verify.json``), through the
one export path ``training.export.export_network``: every foldable BatchNorm is
folded by the engine, the golden samples are the UNFOLDED module's outputs, and
the export is verified against it (float64) on the given data. The service then
serves the file like any other.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from bnfold.card import (
    DataProvenance,
    ImageFiles,
    ImageSpec,
    InputSpec,
    NumericFeature,
    TabularSpec,
)
from training.atomic import write_text_atomic
from training.errors import UsageError, first_line
from training.export import (
    DEFAULT_OPSET,
    FOLD_SAMPLES,
    CardFields,
    ExportResult,
    export_network,
    golden_inputs,
    safe_name,
)
from training.input_affine import StandardizationPlacement, standardize_input
from training.module_data import SampleSet, as_samples, first
from training.module_trace import trace_module
from training.onnx_graph import INPUT_NAME
from training.reference import Standardize, reference_outputs
from training.verify import VerifyReport, verify_model

Kind = Literal["image", "tabular"]
Resize = Literal["bilinear", "nearest", "bicubic", "lanczos"]
VERIFY_FILE = "verify.json"
# Batch independence costs 63 runs per sample: the first this many samples are used.
VERIFY_SAMPLES = 256
DEFAULT_PIXEL_SCALE = 1 / 255  # torchvision's ToTensor(): pixel 0..255 -> 0..1


@dataclass(frozen=True)
class ModelExport:
    """What ``export_model`` wrote and measured."""

    export: ExportResult
    verify: VerifyReport
    standardization: StandardizationPlacement | None
    samples: str  # what the model was checked on, e.g. "256 of 500 (calib.npz)"

    @property
    def path(self) -> Path:
        return self.export.path

    @property
    def passed(self) -> bool:
        """Whether verification passed (parity, batch independence, BN count, digest)."""
        return self.verify.passed


def export_model(
    model: nn.Module,
    example_inputs: torch.Tensor | np.ndarray,
    out_dir: str | os.PathLike[str],
    *,
    labels: Sequence[str],
    kind: Kind | None = None,
    feature_names: Sequence[str] | None = None,
    standardization: tuple[Any, Any] | None = None,
    data: SampleSet | np.ndarray | torch.Tensor | tuple[Any, Any] | None = None,
    name: str | None = None,
    description: str | None = None,
    pixel_scale: float | None = DEFAULT_PIXEL_SCALE,
    resize: Resize | None = "bilinear",
    allow_unfolded: bool = False,
    opset: int = DEFAULT_OPSET,
    verify_samples: int = VERIFY_SAMPLES,
) -> ModelExport:
    """Fold, export, verify ``model`` into ``out_dir`` (``model.onnx``, ``card.json``,
    ``verify.json``).

    ``model``: any ``nn.Module`` taking one float tensor ``(N, *sample_shape)`` and
    returning logits ``(N, len(labels))``; it is copied (to CPU float32, eval mode),
    never changed. ``example_inputs``: raw input samples ``(N, C, H, W)`` or ``(N, F)``
    (what clients will send, *before* ``standardization``); ``kind`` is inferred from
    their shape unless given. ``labels``: the class names in output order.
    ``standardization``: ``(mean, std)``, one value per channel/feature (or one for
    all), e.g. torchvision's ``Normalize`` constants: the graph computes
    ``model((x - mean) / std)``, folded into the first layer when that is exact,
    else as an explicit per-channel affine. ``data``: samples to fold, check and
    verify on (an array ``X``, ``(X, y)`` with class ids or label names, or a
    ``SampleSet``); default ``example_inputs``. ``pixel_scale``/``resize`` (1- or 3-channel
    images): how the service decodes an uploaded image file (tensor = pixel x
    scale, resized with that Pillow filter); ``pixel_scale=None``: tensors only.
    ``allow_unfolded``: export BatchNorms that cannot be folded as
    BatchNormalization nodes instead of failing (such a file is not served).
    ``verify_samples``: fold, golden samples and verification use the first this
    many samples (batch independence runs each sample in 63 batches).

    Bad input raises ``training.errors.UsageError`` (one line) before anything is
    written. Check ``result.passed``: verification failing does not raise.
    """
    examples = _array(example_inputs, "example_inputs")
    sample_shape = tuple(int(d) for d in examples.shape[1:])
    kind = _kind(kind, sample_shape)
    labels = _labels(labels)
    samples = as_samples(examples, sample_shape, labels, "examples")
    if data is not None:
        samples = as_samples(data, sample_shape, labels)
    total = len(samples)
    samples = first(samples, verify_samples)
    mean, std = _standardization(standardization, sample_shape, kind)
    names = _feature_names(feature_names or samples.feature_names, sample_shape, kind)
    files = _image_files(pixel_scale, resize, sample_shape, kind)

    original = copy.deepcopy(model).to("cpu", torch.float32).eval()
    trace_module(original)  # names the failing statement before any work
    oracle: nn.Module = original
    if mean is not None and std is not None:
        oracle = nn.Sequential(Standardize(torch.from_numpy(mean), torch.from_numpy(std)), original)
    oracle = oracle.float().eval()
    logits = _check_output(oracle, samples.x, labels)

    fold_example = torch.from_numpy(samples.x[:FOLD_SAMPLES])
    net: nn.Module = copy.deepcopy(original)
    placement = None
    if mean is not None and std is not None:
        net, placement = standardize_input(net, mean, std, fold_example)
    y_golden = samples.y if samples.y is not None else logits.argmax(axis=1)
    golden = golden_inputs(
        samples.x,
        samples.x,
        y_golden,
        labels,
        test_name=samples.name,
        train_name="data",
        class_word="class" if samples.y is not None else "predicted",
    )
    fields = CardFields(
        name=safe_name(name or type(model).__name__),
        input=_input_spec(kind, sample_shape, names, files, description, placement),
        labels=labels,
        stats_mode="unknown",
        metrics={}
        if samples.y is None
        else {"data_acc": float(np.mean(logits.argmax(1) == samples.y))},
        data=_provenance(samples, len(labels)),
    )
    result = export_network(
        net,
        oracle,
        fold_example,
        golden,
        fields,
        out_dir,
        allow_unfolded=allow_unfolded,
        opset=opset,
    )
    report = verify_model(result.path, oracle, samples.x, samples.y)
    write_text_atomic(
        result.path.parent / VERIFY_FILE, json.dumps(report.to_dict(), indent=2) + "\n"
    )
    return ModelExport(result, report, placement, f"{len(samples)} of {total} ({samples.name})")


def module_oracle(
    model: nn.Module, standardization: tuple[Any, Any] | None, card_input: InputSpec
) -> nn.Module:
    """The unfolded reference ``verify`` compares an ``export_model`` file with."""
    shape = card_input.sample_shape
    mean, std = _standardization(standardization, shape, card_input.kind)
    oracle = copy.deepcopy(model).to("cpu", torch.float32).eval()
    if mean is None or std is None:
        return oracle
    return nn.Sequential(Standardize(torch.from_numpy(mean), torch.from_numpy(std)), oracle).eval()


def _array(value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.ndim not in (2, 4):
        raise UsageError(
            f"{what} must be a batch (N, F) or (N, C, H, W), got shape {list(array.shape)}"
        )
    return array


def _kind(kind: Kind | None, sample_shape: tuple[int, ...]) -> Kind:
    inferred: Kind = "tabular" if len(sample_shape) == 1 else "image"
    if kind is not None and kind != inferred:
        raise UsageError(
            f"kind {kind!r} needs samples of shape {'(F,)' if kind == 'tabular' else '(C, H, W)'}, "
            f"got {list(sample_shape)}"
        )
    return inferred


def _labels(labels: Sequence[str]) -> list[str]:
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


def _standardization(
    value: tuple[Any, Any] | None, sample_shape: tuple[int, ...], kind: str
) -> tuple[np.ndarray | None, np.ndarray | None]:
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
                "(give one per {what}, or one for all)".replace("{what}", what)
            )
        if not np.isfinite(values).all():
            raise UsageError(f"{label} values must be finite")
    if (std <= 0).any():
        raise UsageError("std values must be positive")
    return (
        np.broadcast_to(mean, (channels,)).astype(np.float32),
        np.broadcast_to(std, (channels,)).astype(np.float32),
    )


def _feature_names(
    names: Sequence[str] | None, sample_shape: tuple[int, ...], kind: Kind
) -> list[str] | None:
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


def _image_files(
    scale: float | None, resize: Resize | None, sample_shape: tuple[int, ...], kind: Kind
) -> ImageFiles | None:
    if kind != "image" or scale is None or sample_shape[0] not in (1, 3):
        return None  # image files decode to 1 (L) or 3 (RGB) channels only
    if not (np.isfinite(scale) and scale > 0):
        raise UsageError(f"pixel scale must be positive, got {scale}")
    return ImageFiles(mode="L" if sample_shape[0] == 1 else "RGB", resize=resize, scale=scale)


def _check_output(oracle: nn.Module, x: np.ndarray, labels: list[str]) -> np.ndarray:
    """The oracle's float64 logits on ``x``; ``UsageError`` unless they are (N, classes)."""
    # Batches of 2 and of 1: the service runs one sample at a time.
    for probe in (torch.from_numpy(x[:2]), torch.from_numpy(x[:1])):
        try:
            with torch.no_grad():
                out = oracle(probe)
        except Exception as exc:
            raise UsageError(
                f"the module fails on input of shape {list(probe.shape)}: "
                f"{type(exc).__name__}: {first_line(exc)}"
            ) from exc
        if not isinstance(out, torch.Tensor):
            raise UsageError(
                f"the module returns a {type(out).__name__}; it must return one logits tensor "
                f"(N, {len(labels)})"
            )
        want = [len(probe), len(labels)]
        if list(out.shape) != want or not out.dtype.is_floating_point:
            raise UsageError(
                f"the module returns {list(out.shape)} {str(out.dtype).removeprefix('torch.')} "
                f"for input {list(probe.shape)}; {len(labels)} labels need float logits {want}"
            )
    logits, _ = reference_outputs(oracle, x)
    return logits


def _input_spec(
    kind: Kind,
    shape: tuple[int, ...],
    names: list[str] | None,
    files: ImageFiles | None,
    description: str | None,
    placement: StandardizationPlacement | None,
) -> InputSpec:
    if kind == "tabular":
        assert names is not None
        text = description or f"{shape[0]} numeric features"
        spec = TabularSpec(features=[NumericFeature(name=n) for n in names])
        extra: dict[str, Any] = {"tabular": spec}
    else:
        scale = f", tensor = pixel x {files.scale:.6g}" if files else ""
        text = description or f"{'x'.join(map(str, shape))} image{scale}"
        extra = {
            "image": ImageSpec(channels=shape[0], height=shape[1], width=shape[2], files=files)
        }
    if placement is not None:
        text += f"; {placement.describe()}"
    return InputSpec(name=INPUT_NAME, shape=[-1, *shape], kind=kind, description=text, **extra)


def _provenance(samples: SampleSet, classes: int) -> DataProvenance:
    counts = None if samples.y is None else np.bincount(samples.y, minlength=classes).tolist()
    return DataProvenance(
        source="module",
        name=samples.name,
        sha256=samples.sha256,
        samples={"data": len(samples)},
        class_counts=counts,
    )

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
from typing import Any

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
    VERIFY_FILE,
    CardFields,
    ExportResult,
    export_network,
    golden_inputs,
    safe_name,
)
from training.folder_swap import check_target
from training.input_affine import StandardizationPlacement, standardize_input
from training.module_data import SampleSet, as_samples, first
from training.module_inputs import (
    Kind,
    Resize,
    as_batch,
    checked_feature_names,
    checked_labels,
    checked_standardization,
    image_files,
    input_kind,
)
from training.module_trace import trace_module
from training.onnx_graph import INPUT_NAME
from training.reference import Standardize, reference_outputs
from training.verify import VerifyReport, verify_model

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
    examples = as_batch(example_inputs, "example_inputs")
    sample_shape = tuple(int(d) for d in examples.shape[1:])
    kind = input_kind(kind, sample_shape)
    labels = checked_labels(labels)
    if data is None:
        samples = as_samples(examples, sample_shape, labels, "examples")
    else:
        samples = as_samples(data, sample_shape, labels)
    total = len(samples)
    samples = first(samples, verify_samples)
    mean, std = checked_standardization(standardization, sample_shape, kind)
    names = checked_feature_names(feature_names or samples.feature_names, sample_shape, kind)
    files = image_files(pixel_scale, resize, sample_shape, kind)
    check_target(out_dir)

    original = copy.deepcopy(model).to("cpu", torch.float32).eval()
    trace_module(original)  # names the failing statement before any work
    oracle = _oracle(original, mean, std)
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
        metrics=_accuracy(logits, samples.y),
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
    mean, std = checked_standardization(standardization, shape, card_input.kind)
    return _oracle(copy.deepcopy(model).to("cpu", torch.float32), mean, std)


def _oracle(model: nn.Module, mean: np.ndarray | None, std: np.ndarray | None) -> nn.Module:
    """Standardize (if any) + the UNFOLDED module, eval mode: raw input in, logits out."""
    if mean is None or std is None:
        return model.eval()
    return nn.Sequential(Standardize(torch.from_numpy(mean), torch.from_numpy(std)), model).eval()


def _accuracy(logits: np.ndarray, y: np.ndarray | None) -> dict[str, float]:
    """The card's metrics: the unfolded module's accuracy on the labelled data."""
    return {} if y is None else {"data_acc": float(np.mean(logits.argmax(axis=1) == y))}


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

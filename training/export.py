"""A network -> folded ONNX model with a sealed, self-describing card.

``export_network`` is the one export path: fold every BatchNorm
(``training.folding``), export with softmax inside the graph, check the graph (no
BatchNormalization, no runtime-constant node, ONNX checker, shape inference),
record golden samples computed by the UNFOLDED PyTorch eval model, seal the card
(``bnfold.digest``) and write the files atomically. ``export_checkpoint``
(``python -m training export``) feeds it a trained checkpoint, with the input
standardization folded into the first layer. Given ``MonitorData``, the graph
also gets the monitor's internal output and the card its ``monitor`` entry
(``training.monitor_graph``, ``training.monitor_reference``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bnfold.card import (
    MONITOR_OUTPUT,
    OUTPUTS,
    DataProvenance,
    FoldSummary,
    GoldenSample,
    ImageFiles,
    ImageSpec,
    InputSpec,
    ModelCard,
)
from bnfold.card_markdown import card_markdown
from bnfold.onnxwire import count_ops
from training.atomic import write_bytes_atomic, write_text_atomic
from training.checkpoint import Checkpoint, load_checkpoint
from training.data import load_splits
from training.errors import UsageError, first_line
from training.folder_swap import check_target, update_folder
from training.folding import fold_batchnorm
from training.input_fold import raw_input_model
from training.monitor_graph import WithMonitor, global_average_pools, with_moments
from training.monitor_reference import (
    WINDOW_SIZES,
    MonitorData,
    input_ranges,
    monitor_spec,
    monitored_tensors,
    quantile_tensor,
)
from training.onnx_graph import (
    INPUT_NAME,
    WithProbabilities,
    check_graph,
    ort_session,
    runtime_constant_nodes,
    seal_model,
    to_onnx,
)
from training.reference import reference_model, reference_outputs, standardization_tensors
from training.tabular import model_tabular_spec
from training.verify import PARITY_TOLERANCE, run_alone

MODEL_FILE = "model.onnx"
CARD_FILE = "card.json"
CARD_MARKDOWN_FILE = "card.md"  # the same card for people (what GET /model/card.md serves)
VERIFY_FILE = "verify.json"
# Files describing an earlier model: an export removes them, so a folder never mixes two models.
STALE_AFTER_EXPORT = (VERIFY_FILE,)
DEFAULT_OPSET = 18
GOLDEN_TOLERANCE = PARITY_TOLERANCE  # the service checks the golden samples to this
FOLD_SAMPLES = 256  # inputs that drive the per-fold verification


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and measured."""

    path: Path
    card: ModelCard
    size_bytes: int
    runtime_constant_nodes: int
    golden_max_abs_diff: float


@dataclass(frozen=True)
class CardFields:
    """What the card says about a model beyond what the export measures."""

    name: str
    input: InputSpec
    labels: list[str]
    stats_mode: str
    metrics: dict[str, float]
    data: DataProvenance | None = None
    extra: dict[str, Any] | None = None  # further ModelCard fields (e.g. recalibration)


def export_network(
    net: nn.Module,
    oracle: nn.Module,
    example: torch.Tensor,
    golden_inputs: Sequence[tuple[str, np.ndarray]],
    fields: CardFields,
    out_dir: str | os.PathLike[str],
    *,
    allow_unfolded: bool = False,
    opset: int = DEFAULT_OPSET,
    monitor: MonitorData | None = None,
) -> ExportResult:
    """Fold ``net`` and export it to ``out_dir/model.onnx`` with its sealed card.

    ``net`` takes the model's RAW input (any standardization already inside it)
    and returns logits; ``oracle`` is the same computation UNFOLDED (eval mode),
    whose float64 outputs the golden samples record; ``example`` (raw inputs)
    drives the fold checks; ``golden_inputs`` are ``(note, sample)`` pairs;
    ``monitor`` (optional) adds drift monitoring.
    """
    if opset < 17:
        raise UsageError(f"--opset must be at least 17, got {opset}")
    out = Path(out_dir)
    check_target(out)
    fold = fold_batchnorm(net.eval(), example)
    summary = fold.report.summary()
    if summary["refused"] and not allow_unfolded:
        refused = [e for e in summary["entries"] if e.get("status") == "refused"]
        reasons = "; ".join(f"{e.get('name')}: {e.get('reason')}" for e in refused)
        raise UsageError(
            f"{summary['refused']} BatchNorm layer(s) cannot be folded ({reasons}); "
            "pass --allow-unfolded to export them as BatchNormalization nodes"
        )

    try:
        if monitor is None:
            model = to_onnx(WithProbabilities(fold.model), example[:2], opset=opset)
        else:
            taps, tensors = monitored_tensors(fold.moments, fold.report)
            ranges = input_ranges(monitor.reference, fields.input)
            monitored = WithMonitor(
                with_moments(fold.model, taps, quantile_tensor(ranges), example[:2])
            )
            names = (*OUTPUTS, MONITOR_OUTPUT)
            model = to_onnx(monitored, example[:2], opset=opset, output_names=names)
            model = global_average_pools(model)
    except Exception as exc:  # the exporter raises many types; a user's module may hit any
        raise UsageError(f"torch.onnx.export cannot export the model: {root_cause(exc)}") from exc
    bn_nodes = count_ops(model.SerializeToString(), "BatchNormalization")
    if bn_nodes and not allow_unfolded:
        raise UsageError(f"the exported graph still has {bn_nodes} BatchNormalization node(s)")
    constant = runtime_constant_nodes(model)
    if constant:
        raise UsageError(f"the exported graph computes constants at run time: {constant}")
    model = check_graph(model)

    golden, golden_diff = golden_samples(oracle, model, golden_inputs)
    extra = dict(fields.extra or {})
    if monitor is not None:
        session = ort_session(model)
        extra["monitor"] = monitor_spec(session, tensors, ranges, monitor, fields.input)
    card = ModelCard(
        name=fields.name,
        input=fields.input,
        labels=list(fields.labels),
        stats_mode=fields.stats_mode,  # type: ignore[arg-type]  # validated by pydantic
        bn_nodes=bn_nodes,
        fold=FoldSummary.model_validate(summary),
        data=fields.data,
        metrics={k: float(v) for k, v in fields.metrics.items() if np.isfinite(v)},
        versions=library_versions(),
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        opset=opset,
        golden_tolerance=GOLDEN_TOLERANCE,
        golden=golden,
        **extra,
    )
    data, card = seal_model(model, card)
    with update_folder(out) as stage:
        for stale in STALE_AFTER_EXPORT:
            (stage / stale).unlink(missing_ok=True)
        write_bytes_atomic(stage / MODEL_FILE, data)
        write_text_atomic(stage / CARD_FILE, json.dumps(card.public(), indent=2) + "\n")
        write_text_atomic(stage / CARD_MARKDOWN_FILE, card_markdown(card))
    path = out / MODEL_FILE
    return ExportResult(
        path=path,
        card=card,
        size_bytes=len(data),
        runtime_constant_nodes=len(constant),
        golden_max_abs_diff=golden_diff,
    )


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    name: str | None = None,
    allow_unfolded: bool = False,
    opset: int = DEFAULT_OPSET,
    monitor: bool = True,
) -> ExportResult:
    """Fold and export a training checkpoint to ``out_dir/model.onnx``; ``monitor``: with
    drift monitoring, calibrated on the validation split (skipped when that split is too
    small to calibrate a window: the card then has no ``monitor`` entry).

    A checkpoint written by ``recalibrate`` is exported as ``recalibrate`` did, on its
    target data (``training.recalibrate.export_recalibrated``).
    """
    check_target(out_dir)
    ckpt = load_checkpoint(checkpoint)
    if ckpt.recalibration is not None:
        from training.recalibrate_export import export_recalibrated  # it builds on this module

        return export_recalibrated(ckpt, out_dir, name=name, opset=opset, monitor=monitor)
    splits = load_splits(ckpt.data_spec)
    net = checkpoint_network(ckpt)
    example = torch.as_tensor(splits.train.X[:FOLD_SAMPLES], dtype=torch.float32)
    fields = CardFields(
        name=name or default_name(ckpt),
        input=input_spec(ckpt),
        labels=list(ckpt.labels),
        stats_mode=ckpt.stats_mode,
        metrics=ckpt.metrics,
        data=data_provenance(ckpt.data_spec, splits),
    )
    golden = golden_inputs(splits.train.X, splits.test.X, splits.test.y, ckpt.labels)
    data = MonitorData(reference=splits.train.X, calibration=splits.val.X)
    return export_network(
        net,
        reference_model(ckpt),
        example,
        golden,
        fields,
        out_dir,
        allow_unfolded=allow_unfolded,
        opset=opset,
        monitor=data if monitor and len(splits.val) >= WINDOW_SIZES[0] else None,
    )


def checkpoint_network(ckpt: Checkpoint) -> nn.Module:
    """The checkpoint's network taking RAW input: its standardization's ``1/std`` folded
    into the first layer, the mean subtracted in front (``training.input_fold``)."""
    built = ckpt.build()
    mean, std = standardization_tensors(ckpt)
    return raw_input_model(built, built.input_layer(), mean, std)


def root_cause(exc: BaseException) -> str:
    """The first line of the innermost explicitly chained cause, without terminal colours.

    The exporter wraps the useful message ("No ONNX function found for aten.linalg_eig")
    in generic ones ("Failed to convert the exported program ... Next steps:").
    """
    inner = exc
    for _ in range(16):  # a bounded walk: a cause chain may be a cycle
        if inner.__cause__ is None:
            break
        inner = inner.__cause__
    return re.sub(r"\x1b\[[0-9;]*m", "", first_line(inner))


def golden_inputs(
    x_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    labels: Sequence[str],
    *,
    test_name: str = "test",
    train_name: str = "training",
    class_word: str = "class",
) -> list[tuple[str, np.ndarray]]:
    """One test sample per class (up to 8 classes), then edge cases of the training range.

    The names word the notes: ``test[3] (class cat)``, ``training mean``...
    """
    chosen: list[tuple[str, np.ndarray]] = []
    for label in np.unique(y_test)[:8]:
        index = int(np.flatnonzero(y_test == label)[0])
        note = f"{test_name}[{index}] ({class_word} {labels[int(label)]})"
        chosen.append((note, x_test[index]))
    chosen += [
        ("all zeros", np.zeros_like(x_train[0])),
        (f"{train_name} mean", x_train.mean(axis=0)),
        (f"{train_name} maximum per feature", x_train.max(axis=0)),
        (f"{train_name} minimum per feature", x_train.min(axis=0)),
    ]
    return chosen


def golden_samples(
    oracle: nn.Module, model: Any, inputs: Sequence[tuple[str, np.ndarray]]
) -> tuple[list[GoldenSample], float]:
    """The oracle's outputs on ``inputs``, and the largest |Δprobability| of ``model`` on them,
    which must be within ``GOLDEN_TOLERANCE``."""
    x = np.stack([np.asarray(sample, dtype=np.float32) for _, sample in inputs])
    logits, probs = reference_outputs(oracle, x)
    try:
        _, got = run_alone(ort_session(model), x)
    except Exception as exc:  # onnxruntime's errors have no common base class
        raise UsageError(f"ONNX Runtime cannot run the exported graph: {first_line(exc)}") from exc
    diff = float(np.max(np.abs(got - probs)))
    if not diff <= GOLDEN_TOLERANCE:
        raise UsageError(
            f"the exported model differs from the unfolded PyTorch model by {diff:.3g} "
            f"on the golden samples (tolerance {GOLDEN_TOLERANCE:g})"
        )
    golden = [
        GoldenSample(
            note=note,
            input=x[i].ravel().tolist(),
            logits=logits[i].tolist(),
            probabilities=probs[i].tolist(),
        )
        for i, (note, _) in enumerate(inputs)
    ]
    return golden, diff


def input_spec(ckpt: Checkpoint) -> InputSpec:
    """The card's description of the model input, from the checkpoint: the tabular
    encoding (features, categories, fill values) or how image files are decoded."""
    info = ckpt.input
    shape = [int(d) for d in info["sample_shape"]]
    description = str(info.get("description", ""))
    if info["kind"] == "tabular":
        return InputSpec(
            name=INPUT_NAME,
            shape=[-1, *shape],
            kind="tabular",
            description=description,
            tabular=model_tabular_spec(info),
        )
    files = info.get("image_files")
    image = ImageSpec(
        channels=shape[0],
        height=shape[1],
        width=shape[2],
        files=None if files is None else ImageFiles.model_validate(files),
    )
    return InputSpec(
        name=INPUT_NAME, shape=[-1, *shape], kind="image", description=description, image=image
    )


def data_provenance(spec: dict[str, Any], splits: Any) -> DataProvenance:
    """The card's ``data`` entry: the source (sklearn, csv, npz, images), the SHA-256 of
    its file or folder, split sizes and training samples per class."""
    counts = np.bincount(splits.train.y, minlength=len(splits.labels))
    return DataProvenance(
        source=str(spec.get("source", "unknown")),
        name=str(spec.get("name", "")),
        sha256=splits.spec.get("sha256") or spec.get("sha256"),
        samples={"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        class_counts=[int(c) for c in counts],
    )


def default_name(ckpt: Checkpoint) -> str:
    """``<dataset>-<model kind>``, e.g. ``digits-cnn``: the model's name on the service."""
    dataset = Path(str(ckpt.data_spec.get("name") or "model")).stem
    return safe_name(f"{dataset}-{ckpt.model_config.kind}")


def safe_name(text: str) -> str:
    """``text`` made a valid model name (letters, digits, ``.``, ``_``, ``-``; 64 at most)."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "-" for c in text)
    cleaned = cleaned.replace("_", "-").strip("-._").lower()[:64]
    return cleaned or "model"


def library_versions() -> dict[str, str]:
    """Versions of the libraries that produced the file."""
    versions = {"python": platform.python_version()}
    for dist in ("torch", "onnx", "onnxruntime", "onnxscript", "bnfold"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions

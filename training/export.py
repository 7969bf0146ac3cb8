"""Checkpoint -> folded ONNX model with a self-describing card (``python -m training export``).

The steps: fold the input standardization into the first layer, fold every
BatchNorm (``training.folding``), export with softmax inside the graph, check the
graph (no BatchNormalization, no runtime-constant node, ONNX checker, shape
inference), record golden samples computed by the UNFOLDED PyTorch eval model, and
write the file atomically.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx
import torch

from service.card import (
    FoldSummary,
    GoldenSample,
    InputSpec,
    ModelCard,
    count_ops,
    weights_sha256,
    write_card,
)
from training.atomic import write_text_atomic, write_with_atomic
from training.checkpoint import Checkpoint, load_checkpoint
from training.data import load_splits
from training.errors import UsageError
from training.folding import fold_batchnorm
from training.input_fold import fold_standardization_into
from training.onnx_graph import (
    INPUT_NAME,
    WithProbabilities,
    check_graph,
    ort_session,
    runtime_constant_nodes,
    to_onnx,
)
from training.reference import (
    reference_model,
    reference_outputs,
    standardization_tensors,
)
from training.verify import PARITY_TOLERANCE, run_alone

MODEL_FILE = "model.onnx"
DEFAULT_OPSET = 18
GOLDEN_TOLERANCE = PARITY_TOLERANCE  # the service checks the golden samples to this


@dataclass(frozen=True)
class ExportResult:
    """What ``export_checkpoint`` wrote and measured."""

    path: Path
    card: ModelCard
    size_bytes: int
    runtime_constant_nodes: int
    golden_max_abs_diff: float


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    name: str | None = None,
    allow_unfolded: bool = False,
    opset: int = DEFAULT_OPSET,
) -> ExportResult:
    """Fold and export ``checkpoint`` to ``out_dir/model.onnx``; see the module docstring."""
    if opset < 17:
        raise UsageError(f"--opset must be at least 17, got {opset}")
    out = Path(out_dir)
    ensure_writable_dir(out)
    ckpt = load_checkpoint(checkpoint)
    splits = load_splits(ckpt.data_spec)

    raw_input_net = ckpt.build()
    mean, std = standardization_tensors(ckpt)
    fold_standardization_into(raw_input_net.input_layer(), mean, std)
    example = torch.as_tensor(splits.train.X[:256], dtype=torch.float32)
    fold = fold_batchnorm(raw_input_net, example)
    summary = fold.report.summary()
    if summary["refused"] and not allow_unfolded:
        refused = [e for e in summary["entries"] if e.get("status") == "refused"]
        reasons = "; ".join(f"{e.get('name')}: {e.get('reason')}" for e in refused)
        raise UsageError(
            f"{summary['refused']} BatchNorm layer(s) cannot be folded ({reasons}); "
            "pass --allow-unfolded to export them as BatchNormalization nodes"
        )

    model = to_onnx(WithProbabilities(fold.model), example[:2], opset=opset)
    bn_nodes = count_ops(model, "BatchNormalization")
    if bn_nodes and not allow_unfolded:
        raise UsageError(f"the exported graph still has {bn_nodes} BatchNormalization node(s)")
    constant = runtime_constant_nodes(model)
    if constant:
        raise UsageError(f"the exported graph computes constants at run time: {constant}")
    model = check_graph(model)

    golden, golden_diff = golden_samples(ckpt, model, splits.train.X, splits.test.X, splits.test.y)
    card = ModelCard(
        name=name or default_name(ckpt),
        input=input_spec(ckpt),
        labels=list(ckpt.labels),
        stats_mode=ckpt.stats_mode,
        bn_nodes=bn_nodes,
        fold=FoldSummary.model_validate(summary),
        metrics={k: float(v) for k, v in ckpt.metrics.items() if isinstance(v, int | float)},
        versions=library_versions(),
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        opset=opset,
        weights_sha256=weights_sha256(model),
        golden_tolerance=GOLDEN_TOLERANCE,
        golden=golden,
    )
    write_card(model, card)
    path = out / MODEL_FILE
    write_with_atomic(path, lambda tmp: onnx.save_model(model, str(tmp)))
    write_text_atomic(out / "card.json", json.dumps(card.public(), indent=2) + "\n")
    return ExportResult(
        path=path,
        card=card,
        size_bytes=path.stat().st_size,
        runtime_constant_nodes=len(constant),
        golden_max_abs_diff=golden_diff,
    )


def ensure_writable_dir(path: Path) -> None:
    """Create ``path`` if needed and prove a file can be written there, before any work."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise UsageError(f"output folder {path} is not writable: {exc.strerror}") from None


def golden_samples(
    ckpt: Checkpoint,
    model: onnx.ModelProto,
    x_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
) -> tuple[list[GoldenSample], float]:
    """Golden inputs (one test sample per class, then edge cases) with the unfolded model's outputs.

    Returns the samples and the largest |Δprobability| of ``model`` on them, which
    must be within ``GOLDEN_TOLERANCE``.
    """
    inputs: list[np.ndarray] = []
    notes: list[str] = []
    for label in np.unique(y_test)[:8]:
        index = int(np.flatnonzero(y_test == label)[0])
        inputs.append(x_test[index])
        notes.append(f"test[{index}] (class {ckpt.labels[int(label)]})")
    edge_cases = {
        "all zeros": np.zeros_like(x_train[0]),
        "training mean": x_train.mean(axis=0),
        "training maximum per feature": x_train.max(axis=0),
        "training minimum per feature": x_train.min(axis=0),
    }
    for note, sample in edge_cases.items():
        inputs.append(sample.astype(np.float32))
        notes.append(note)
    x = np.stack(inputs).astype(np.float32)
    logits, probs = reference_outputs(reference_model(ckpt), x)
    _, got = run_alone(ort_session(model), x)
    diff = float(np.max(np.abs(got - probs)))
    if diff > GOLDEN_TOLERANCE:
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
        for i, note in enumerate(notes)
    ]
    return golden, diff


def input_spec(ckpt: Checkpoint) -> InputSpec:
    """The card's description of the model input, from the checkpoint."""
    info = ckpt.input
    sample_shape = [int(d) for d in info["sample_shape"]]
    kind = info["kind"]
    return InputSpec(
        name=INPUT_NAME,
        shape=[-1, *sample_shape],
        kind=kind,
        feature_names=list(info["feature_names"]) if kind == "tabular" else None,
        image_hw=(sample_shape[-2], sample_shape[-1]) if kind == "image" else None,
        description=str(info.get("description", "")),
    )


def default_name(ckpt: Checkpoint) -> str:
    """``<dataset>-<model kind>``, e.g. ``digits-cnn``: the model's name on the service."""
    dataset = Path(str(ckpt.data_spec.get("name") or "model")).stem
    return f"{dataset}-{ckpt.model_config.kind}".replace("_", "-").lower()


def library_versions() -> dict[str, str]:
    """Versions of the libraries that produced the file."""
    versions = {"python": platform.python_version()}
    for dist in ("torch", "onnx", "onnxruntime", "onnxscript", "bnfold"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions

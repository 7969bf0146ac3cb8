"""``recalibrate``: a checkpoint adapted to target-domain data (AdaBN), exported and verified.

``recalibrate_checkpoint`` reads the checkpoint and the model it was exported
as (its parent: ``model.onnx`` beside the checkpoint, or ``parent``; checked to
be that checkpoint's export by its golden samples), reads the target data with
the model's encoding (``training.target_data``), recomputes the input
standardization and every BN statistic on it (``training.adabn``), then writes
``out_dir`` as a whole (``training.folder_swap``): the new ``model.onnx`` and
``card.json`` through the one export path (``training.export.export_network``)
with the AdaBN provenance in the card (``recalibration``: parent version,
target SHA-256, sample count), a recalibrated ``checkpoint.pt`` (its
``recalibration`` entry says where the target data is, so ``export`` redoes
this export and ``recalibrate`` can start from it again), ``verify.json``
(parity with the UNFOLDED recalibrated model, batch independence) and
``recalibration.json``. If verification fails nothing is written.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bnfold import digest
from bnfold.card import DataProvenance, ModelCard, Recalibration
from training.adabn import LayerChange, adabn
from training.atomic import write_text_atomic
from training.checkpoint import Checkpoint, library_versions, load_checkpoint, save_checkpoint
from training.errors import UsageError
from training.export import (
    DEFAULT_OPSET,
    FOLD_SAMPLES,
    MODEL_FILE,
    VERIFY_FILE,
    CardFields,
    ExportResult,
    checkpoint_network,
    export_network,
    golden_inputs,
    input_spec,
)
from training.folder_swap import check_target, update_folder
from training.reference import reference_model, reference_outputs
from training.target_data import Labels, TargetData, load_target, reload_target
from training.verify import PARITY_TOLERANCE, VerifyReport, verify_model

CHECKPOINT_FILE = "checkpoint.pt"
REPORT_FILE = "recalibration.json"
WRITTEN = (MODEL_FILE, "card.json", CHECKPOINT_FILE, VERIFY_FILE, REPORT_FILE, "card.md")
VERIFY_SAMPLES = 512  # batch independence runs each sample in 63 batches


class VerificationFailed(Exception):
    """The recalibrated export disagrees with its unfolded model; nothing was written."""

    def __init__(self, report: VerifyReport) -> None:
        super().__init__("the recalibrated model failed verification; nothing was written")
        self.report = report


@dataclass(frozen=True)
class Accuracy:
    """Accuracy of the parent and of the recalibrated model on one labelled set."""

    data: str
    samples: int
    before: float
    after: float


@dataclass(frozen=True)
class RecalibrationResult:
    """What ``recalibrate_checkpoint`` wrote and measured."""

    export: ExportResult
    verify: VerifyReport
    parent: Path
    parent_version: str
    target: str
    target_samples: int
    changes: list[LayerChange]
    accuracy: list[Accuracy]

    def to_dict(self) -> dict[str, Any]:
        """``recalibration.json``."""
        return {
            "model": str(self.export.path),
            "version": self.export.card.version,
            "parent": str(self.parent),
            "parent_version": self.parent_version,
            "target": self.target,
            "target_samples": self.target_samples,
            "statistics": [asdict(c) for c in self.changes],
            "accuracy": [asdict(a) for a in self.accuracy],
            "verified": self.verify.passed,
        }


def recalibrate_checkpoint(
    checkpoint: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    parent: str | os.PathLike[str] | None = None,
    label_column: str | None = None,
    labels: Labels = "auto",
    evaluation: str | os.PathLike[str] | None = None,
    name: str | None = None,
    opset: int = DEFAULT_OPSET,
    verify_samples: int = VERIFY_SAMPLES,
) -> RecalibrationResult:
    """Recalibrate ``checkpoint`` on ``data`` into ``out_dir`` (see the module docstring).

    ``label_column``: a CSV's label column (default: the checkpoint's, when the file
    has it); ``labels``: ``auto`` uses the labels the data has (to report accuracy
    before and after), ``ignore`` never, ``require`` fails without them.
    ``evaluation``: a labelled file to report accuracy before and after on too.
    Bad input raises ``UsageError`` before anything is written.
    """
    source = Path(checkpoint)
    out = Path(out_dir)
    check_target(out)
    ckpt = load_checkpoint(source)
    parent_path = Path(parent) if parent is not None else source.parent / MODEL_FILE
    check_out(out, [source.parent, parent_path.parent])
    parent_card = parent_of(parent_path, parent is not None, ckpt, source)
    column = label_column or ckpt.data_spec.get("label_column")
    target = load_target(data, column, ckpt, labels)
    held_out = None
    if evaluation is not None:
        held_out = load_target(evaluation, column, ckpt, "require")

    adapted, changes = adabn(ckpt, target.x)
    accuracy, metrics = [], {}
    for prefix, labelled in (("target", target), ("eval", held_out)):
        acc = _accuracy(ckpt, adapted, labelled)
        if acc is not None:
            accuracy.append(acc)
            metrics[f"{prefix}_acc_before"], metrics[f"{prefix}_acc_after"] = acc.before, acc.after
    provenance = Recalibration(
        parent_version=parent_card.version,
        target_sha256=target.sha256,
        target_samples=len(target),
    )
    counts = parent_card.data.class_counts if parent_card.data is not None else None
    adapted = replace(
        adapted,
        metrics=metrics,
        versions=library_versions(),
        recalibration={
            "card": provenance.model_dump(mode="json"),
            "target": target.where(),
            "name": name or parent_card.name,
            "class_counts": counts,
        },
    )
    with update_folder(out) as stage:
        result = export_recalibrated(adapted, stage, target=target, opset=opset)
        save_checkpoint(stage / CHECKPOINT_FILE, adapted)
        x, y = spread(target, verify_samples)
        report = verify_model(result.path, reference_model(adapted), x, y)
        report = replace(report, model=str(out / MODEL_FILE))
        if not report.passed:
            raise VerificationFailed(report)
        write_text_atomic(stage / VERIFY_FILE, json.dumps(report.to_dict(), indent=2) + "\n")
        done = RecalibrationResult(
            export=replace(result, path=out / MODEL_FILE),
            verify=report,
            parent=parent_path,
            parent_version=parent_card.version,
            target=str(target.path),
            target_samples=len(target),
            changes=changes,
            accuracy=accuracy,
        )
        write_text_atomic(stage / REPORT_FILE, json.dumps(done.to_dict(), indent=2) + "\n")
    return done


def export_recalibrated(
    ckpt: Checkpoint,
    out_dir: str | os.PathLike[str],
    *,
    target: TargetData | None = None,
    name: str | None = None,
    opset: int = DEFAULT_OPSET,
) -> ExportResult:
    """Export a recalibrated checkpoint: golden samples, fold checks and the card's data
    from its target data (read again, and checked unchanged, unless given)."""
    info = ckpt.recalibration
    if info is None:
        raise ValueError("not a recalibrated checkpoint")
    try:
        provenance = Recalibration.model_validate(info["card"])
        where = dict(info["target"])
        model_name = str(name or info["name"])
        counts = info.get("class_counts")
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"the checkpoint's recalibration entry is malformed ({exc})") from None
    if target is None:
        target = reload_target(where, ckpt)
    y = target.y
    oracle = reference_model(ckpt)
    if y is None:
        y_golden = reference_outputs(oracle, target.x)[0].argmax(axis=1)
    else:
        y_golden, counts = y, np.bincount(y, minlength=len(ckpt.labels)).tolist()
    golden = golden_inputs(
        target.x,
        target.x,
        y_golden,
        ckpt.labels,
        test_name="target",
        train_name="target",
        class_word="class" if y is not None else "predicted",
    )
    fields = CardFields(
        name=model_name,
        input=input_spec(ckpt),
        labels=list(ckpt.labels),
        stats_mode=ckpt.stats_mode,
        metrics=ckpt.metrics,
        data=DataProvenance(
            source=target.source,
            name=target.name,
            sha256=target.sha256,
            samples={"target": len(target)},
            class_counts=None if counts is None else [int(c) for c in counts],
        ),
        extra={"recalibration": provenance},
    )
    example = torch.as_tensor(spread(target, FOLD_SAMPLES)[0])
    return export_network(
        checkpoint_network(ckpt), oracle, example, golden, fields, out_dir, opset=opset
    )


def parent_of(path: Path, given: bool, ckpt: Checkpoint, checkpoint: Path) -> ModelCard:
    """The card of the model ``checkpoint`` was exported as, checked to be its export."""
    if not path.is_file():
        if given:
            raise UsageError(f"--parent {path} does not exist")
        raise UsageError(
            f"no {MODEL_FILE} beside {checkpoint}: the recalibrated model's card names the "
            "version it was recalibrated from, so export the checkpoint first "
            f"(python -m training export {checkpoint} --out DIR) or pass --parent MODEL.onnx"
        )
    try:
        card = digest.check(path.read_bytes())
    except digest.DigestError as exc:
        raise UsageError(f"parent model {path}: {exc}") from None
    except (OSError, ValueError):
        raise UsageError(f"parent model {path} is not a readable ONNX file") from None
    mine = input_spec(ckpt)
    if card.labels != ckpt.labels or (card.input.kind, card.input.shape) != (mine.kind, mine.shape):
        raise UsageError(f"parent model {path} has other labels or input than {checkpoint}")
    x = np.asarray([g.input for g in card.golden], dtype=np.float32)
    x = x.reshape(len(x), *card.input.sample_shape)
    _, probs = reference_outputs(reference_model(ckpt), x)
    diff = float(np.max(np.abs(probs - np.asarray([g.probabilities for g in card.golden]))))
    if not diff <= PARITY_TOLERANCE:
        raise UsageError(
            f"parent model {path} was not exported from {checkpoint} (its golden samples "
            f"differ by {diff:.3g}); pass --parent with the model exported from it"
        )
    return card


def check_out(out: Path, taken: list[Path]) -> None:
    """``UsageError`` unless ``out`` is a folder of its own for the recalibrated model."""
    target = out.absolute().resolve()
    for folder in taken:
        if target == folder.absolute().resolve():
            raise UsageError(
                f"--out {out} holds the model being recalibrated; choose a folder of its own"
            )
    if target.is_dir():
        others = sorted(
            p.name for p in target.iterdir() if p.name not in WRITTEN and not p.name.startswith(".")
        )
        if others:
            raise UsageError(
                f"--out {out} holds other files ({', '.join(others[:3])}); recalibrate "
                "replaces the folder as a whole, so choose a new or empty one"
            )


def spread(target: TargetData, count: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Up to ``count`` samples spread evenly over the data (files may be sorted by class)."""
    index = np.unique(np.linspace(0, len(target) - 1, min(count, len(target))).round().astype(int))
    return target.x[index], None if target.y is None else target.y[index]


def _accuracy(before: Checkpoint, after: Checkpoint, data: TargetData | None) -> Accuracy | None:
    if data is None or data.y is None:
        return None
    scores = [
        float(np.mean(reference_outputs(reference_model(c), data.x)[0].argmax(axis=1) == data.y))
        for c in (before, after)
    ]
    return Accuracy(data=data.name, samples=len(data), before=scores[0], after=scores[1])

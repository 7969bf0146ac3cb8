"""``recalibrate``: a checkpoint adapted to target-domain data (AdaBN), exported and verified.

``recalibrate_checkpoint`` reads the checkpoint and the model it was exported
as (its parent: ``model.onnx`` beside the checkpoint, or ``parent``; checked to
be that checkpoint's export by its golden samples), reads the target data with
the model's encoding (``training.target_data``), recomputes the input
standardization and every BN statistic on it (``training.adabn``), then writes
``out_dir`` as a whole (``training.folder_swap``): the new ``model.onnx`` and
``card.json`` through the one export path (``training.export.export_network``)
with the AdaBN provenance in the card (``recalibration``: parent version,
target SHA-256, sample count; a held-out part of the target data calibrates the drift
monitor, whose reference is the new statistics), a recalibrated ``checkpoint.pt`` (its
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

from bnfold.card import Recalibration
from training.adabn import LayerChange, adabn
from training.atomic import write_text_atomic
from training.checkpoint import Checkpoint, library_versions, load_checkpoint, save_checkpoint
from training.export import DEFAULT_OPSET, MODEL_FILE, VERIFY_FILE, ExportResult
from training.folder_swap import check_target, update_folder
from training.recalibrate_export import (
    check_out,
    export_recalibrated,
    parent_of,
    split_target,
    spread,
)
from training.reference import reference_model, reference_outputs
from training.target_data import Labels, TargetData, load_target
from training.verify import VerifyReport, verify_model

CHECKPOINT_FILE = "checkpoint.pt"
REPORT_FILE = "recalibration.json"
VERIFY_SAMPLES = 512  # batch independence runs each sample in 63 batches
HOLDOUT = 0.2  # of the target data, held out from the statistics to calibrate the monitor


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
    target_samples: int  # the ones the statistics were computed on
    monitored: bool  # whether the card has a drift monitor
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
            "monitor": self.monitored,
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
    holdout: float = HOLDOUT,
) -> RecalibrationResult:
    """Recalibrate ``checkpoint`` on ``data`` into ``out_dir`` (see the module docstring).

    ``label_column``: a CSV's label column (default: the checkpoint's, when the file
    has it); ``labels``: ``auto`` uses the labels the data has (to report accuracy
    before and after), ``ignore`` never, ``require`` fails without them.
    ``evaluation``: a labelled file to report accuracy before and after on too.
    ``holdout``: the share of the target data kept out of the statistics to calibrate
    the drift monitor's thresholds (0, or too few samples: no monitor).
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

    split = split_target(len(target), holdout)

    adapted, changes = adabn(ckpt, target.x[split.statistics])
    accuracy, metrics = [], {}
    for prefix, labelled in (("target", target), ("eval", held_out)):
        acc = _accuracy(ckpt, adapted, labelled)
        if acc is not None:
            accuracy.append(acc)
            metrics[f"{prefix}_acc_before"], metrics[f"{prefix}_acc_after"] = acc.before, acc.after
    provenance = Recalibration(
        parent_version=parent_card.version,
        target_sha256=target.sha256,
        target_samples=len(split.statistics),
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
            "holdout": holdout,
        },
    )
    with update_folder(out) as stage:
        result = export_recalibrated(adapted, stage, target=target, opset=opset)
        save_checkpoint(stage / CHECKPOINT_FILE, adapted)
        x, y = spread(target.x, target.y, verify_samples)
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
            target_samples=len(split.statistics),
            monitored=result.card.monitor is not None,
            changes=changes,
            accuracy=accuracy,
        )
        write_text_atomic(stage / REPORT_FILE, json.dumps(done.to_dict(), indent=2) + "\n")
    return done


def _accuracy(before: Checkpoint, after: Checkpoint, data: TargetData | None) -> Accuracy | None:
    if data is None or data.y is None:
        return None
    scores = [
        float(np.mean(reference_outputs(reference_model(c), data.x)[0].argmax(axis=1) == data.y))
        for c in (before, after)
    ]
    return Accuracy(data=data.name, samples=len(data), before=scores[0], after=scores[1])

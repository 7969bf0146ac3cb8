"""The export of a recalibrated checkpoint, and the checks ``recalibrate`` makes before any work.

``export_recalibrated`` goes through the one export path
(``training.export.export_network``) with everything taken from the target data
instead of the training split: the fold checks, the golden samples, the card's
``data`` and, with a held-out part, the drift monitor (its reference is the
recalibrated statistics themselves; its thresholds are calibrated on the held-out
part, which the statistics never saw, as training calibrates on its validation
split). ``recalibrate`` and ``export`` of a recalibrated checkpoint both call it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bnfold import digest
from bnfold.card import DataProvenance, ModelCard, Recalibration
from training.checkpoint import Checkpoint
from training.errors import UsageError
from training.export import (
    DEFAULT_OPSET,
    FOLD_SAMPLES,
    MODEL_FILE,
    CardFields,
    ExportResult,
    checkpoint_network,
    export_network,
    golden_inputs,
    input_spec,
)
from training.monitor_reference import WINDOW_SIZES, MonitorData
from training.reference import reference_model, reference_outputs
from training.target_data import TargetData, reload_target
from training.verify import PARITY_TOLERANCE

HOLDOUT_SEED = 0
# Files recalibrate writes: an --out folder holding anything else is refused.
WRITTEN = (MODEL_FILE, "card.json", "checkpoint.pt", "verify.json", "recalibration.json", "card.md")


@dataclass(frozen=True)
class TargetSplit:
    """Which target samples the statistics are computed on, which calibrate the monitor."""

    statistics: np.ndarray  # sorted indices
    calibration: np.ndarray  # sorted indices; empty: no monitor

    @property
    def monitored(self) -> bool:
        """Whether the held-out part is large enough to calibrate the drift monitor."""
        return len(self.calibration) >= WINDOW_SIZES[0]


def split_target(samples: int, holdout: float) -> TargetSplit:
    """Hold out ``holdout`` of ``samples`` (seeded, deterministic) for the monitor."""
    order = np.random.default_rng(HOLDOUT_SEED).permutation(samples)
    held = round(samples * holdout)
    if samples - held < 2:
        raise UsageError(
            f"--holdout {holdout:g} leaves {samples - held} of {samples} samples for the "
            "statistics; they need at least 2"
        )
    return TargetSplit(np.sort(order[held:]), np.sort(order[:held]))


def export_recalibrated(
    ckpt: Checkpoint,
    out_dir: str | os.PathLike[str],
    *,
    target: TargetData | None = None,
    name: str | None = None,
    opset: int = DEFAULT_OPSET,
    monitor: bool = True,
) -> ExportResult:
    """Export a recalibrated checkpoint: fold checks, golden samples, the card's data and
    the drift monitor from its target data (read again, and checked unchanged, unless
    given); ``monitor=False``: without the monitor."""
    info = ckpt.recalibration
    if info is None:
        raise ValueError("not a recalibrated checkpoint")
    try:
        provenance = Recalibration.model_validate(info["card"])
        where = dict(info["target"])
        model_name = str(name or info["name"])
        counts = info.get("class_counts")
        holdout = float(info["holdout"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"the checkpoint's recalibration entry is malformed ({exc})") from None
    if target is None:
        target = reload_target(where, ckpt)
    split = split_target(len(target), holdout)
    x = target.x[split.statistics]
    oracle = reference_model(ckpt)
    if target.y is None:
        y_golden = reference_outputs(oracle, x)[0].argmax(axis=1)
    else:
        y_golden = target.y[split.statistics]
        counts = np.bincount(target.y, minlength=len(ckpt.labels)).tolist()
    golden = golden_inputs(
        x,
        x,
        y_golden,
        ckpt.labels,
        test_name="target",
        train_name="target",
        class_word="class" if target.y is not None else "predicted",
    )
    samples = {"statistics": len(split.statistics), "calibration": len(split.calibration)}
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
            samples=samples,
            class_counts=None if counts is None else [int(c) for c in counts],
        ),
        extra={"recalibration": provenance},
    )
    data = MonitorData(
        reference=x,
        calibration=target.x[split.calibration],
        reference_name=f"{target.name} (recalibration part)",
        calibration_name=f"{target.name} (held-out part)",
    )
    return export_network(
        checkpoint_network(ckpt),
        oracle,
        torch.as_tensor(spread(x, None, FOLD_SAMPLES)[0]),
        golden,
        fields,
        out_dir,
        opset=opset,
        monitor=data if monitor and split.monitored else None,
    )


def parent_of(path: Path, given: bool, ckpt: Checkpoint, checkpoint: Path) -> ModelCard:
    """The card of the model ``checkpoint`` was exported as, checked to be its export: same
    labels and input, and its golden samples reproduced by the checkpoint's unfolded model."""
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


def spread(x: np.ndarray, y: np.ndarray | None, count: int) -> tuple[np.ndarray, Any]:
    """Up to ``count`` samples spread evenly over ``x`` (files may be sorted by class)."""
    index = np.unique(np.linspace(0, len(x) - 1, min(count, len(x))).round().astype(int))
    return x[index], None if y is None else y[index]

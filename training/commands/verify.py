"""``python -m training verify MODEL.onnx``: prove the export against the unfolded model."""

from __future__ import annotations

import argparse
import json

import numpy as np

from training.atomic import write_text_atomic
from training.checkpoint import Checkpoint, load_checkpoint
from training.commands.verify_options import VerifyOptions, VerifyTarget
from training.console import print_table
from training.data import load_file_data, load_splits
from training.errors import UsageError
from training.option_parser import from_args
from training.reference import reference_model
from training.verify import VerifyReport, verify_model


def run(args: argparse.Namespace) -> int:
    """Verify, print, save ``verify.json``; exit 1 when a check fails."""
    target: VerifyTarget = from_args(VerifyTarget, args)
    split = from_args(VerifyOptions, args).split
    model = target.model
    if not model.is_file():
        raise UsageError(f"model file {model} does not exist")
    ckpt = load_checkpoint(target.checkpoint or model.parent / "checkpoint.pt")
    x, y = evaluation_data(ckpt, target.data, target.label_column, split)
    report = verify_model(model, reference_model(ckpt), x, y)
    show_report(report)
    write_text_atomic(model.parent / "verify.json", json.dumps(report.to_dict(), indent=2) + "\n")
    return 0 if report.passed else 1


def evaluation_data(
    ckpt: Checkpoint, data: str | None, label_column: str | None, split: str
) -> tuple[np.ndarray, np.ndarray]:
    """The samples to verify on: a user file, or a split of the checkpoint's own dataset."""
    if data is not None:
        return load_file_data(data, label_column or ckpt.data_spec.get("label_column"), ckpt)
    splits = load_splits(ckpt.data_spec)
    part = getattr(splits, split)
    return part.X, part.y


def show_report(report: VerifyReport) -> None:
    """Print the verify report as a table."""
    parity, batch = report.parity, report.batch_independence
    rows: list[tuple[str, object]] = [
        ("model", report.model),
        ("BatchNormalization nodes (card says)", f"{report.bn_nodes} ({report.card_bn_nodes})"),
        ("digest matches card", report.digest_matches_card),
        ("parity samples (one at a time)", parity.samples),
        ("argmax mismatches vs unfolded PyTorch", parity.argmax_mismatches),
        ("max |Δprobability|", f"{parity.max_abs_prob_diff:.2e} (≤ {parity.tolerance:g})"),
        ("max |Δlogit|", f"{parity.max_abs_logit_diff:.2e}"),
    ]
    if parity.accuracy is not None:
        rows.append(("accuracy (ONNX Runtime)", f"{parity.accuracy:.2%}"))
    rows += [
        (
            "batch independence",
            f"{batch.comparisons} comparisons in {batch.batches} batches of "
            f"{batch.min_batch}..{batch.max_batch}",
        ),
        ("max |Δp| alone vs in batch", f"{batch.max_abs_prob_diff:.2e} (≤ {batch.tolerance:g})"),
        *(("note", note) for note in report.notes),
        ("verdict", report.passed),
    ]
    print_table("verify", rows)

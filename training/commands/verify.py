"""``python -m training verify MODEL.onnx``: prove the export against the unfolded model.

The unfolded model is the checkpoint's network (``--checkpoint``, default
``checkpoint.pt`` beside the model) or, for a file written by ``export-module``,
the user's module (``--module FILE.py:FACTORY --weights W.pt`` with the same
``--mean``/``--std`` and ``--data`` as the export).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from bnfold import digest
from bnfold.card import ModelCard
from training.atomic import write_text_atomic
from training.checkpoint import Checkpoint, load_checkpoint
from training.commands.export_module import (
    VERIFY_SAMPLES,
    add_module_arguments,
    load_user_module,
    standardization,
)
from training.console import print_table
from training.data import load_file_data, load_splits
from training.errors import UsageError
from training.reference import reference_model
from training.verify import VerifyReport, verify_model

SPLITS = ("train", "val", "test")
MODULE_HINT = (
    "a module model fails when verify is not given the export's --weights, --mean/--std and --data"
)


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``verify`` and ``all``."""
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="test",
        help="which split of the checkpoint's dataset to check on (default: %(default)s)",
    )


def register(subparsers: Any) -> None:
    """Add the ``verify`` sub-command."""
    parser = subparsers.add_parser(
        "verify",
        help="check an exported model against the unfolded PyTorch model",
        description="Run the ONNX model with ONNX Runtime on a whole split, one sample at a time, "
        "against the UNFOLDED PyTorch model in eval mode (identical argmax, max |Δp| <= 1e-5), "
        "and check batch independence (each sample alone == inside batches of 2..64 random "
        "others, within 1e-6). Prints a table and writes verify.json beside the model. "
        "Exits 1 if a check fails.",
    )
    parser.add_argument("model", help="model.onnx written by `python -m training export`")
    parser.add_argument(
        "--checkpoint",
        help="the checkpoint the model was exported from (default: checkpoint.pt beside the model)",
    )
    parser.add_argument(
        "--data",
        help="check on this CSV or .npz file instead of a split of the checkpoint's dataset",
    )
    parser.add_argument(
        "--label-column", help="with a CSV --data: the label column (default: the checkpoint's)"
    )
    add_verify_arguments(parser)
    parser.add_argument(
        "--module",
        metavar="FILE.py:FACTORY",
        help="verify a model written by export-module against this module instead of a "
        "checkpoint (give the same --weights, --mean/--std and --data as the export; "
        "without --data: the same random inputs)",
    )
    add_module_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Verify, print, save ``verify.json``; exit 1 when a check fails."""
    model = Path(args.model)
    if not model.is_file():
        raise UsageError(f"model file {model} does not exist")
    notes: list[str] = []
    if args.module is not None:
        oracle, x, y = module_evaluation(model, args)
        notes = module_notes(model, args)
    else:
        given = [f for f in ("weights", "mean", "std", "verify_samples") if getattr(args, f)]
        if given:
            flag = given[0].replace("_", "-")
            raise UsageError(f"--{flag} is for --module (a model written by export-module)")
        checkpoint = Path(args.checkpoint) if args.checkpoint else model.parent / "checkpoint.pt"
        ckpt = load_checkpoint(checkpoint)
        x, y = evaluation_data(ckpt, args.data, args.label_column, args.split)
        oracle = reference_model(ckpt)
    report = verify_model(model, oracle, x, y)
    if notes:
        report = replace(report, notes=[*report.notes, *notes])
        if not report.passed:
            report = replace(report, notes=[*report.notes, MODULE_HINT])
    show_report(report)
    write_text_atomic(model.parent / "verify.json", json.dumps(report.to_dict(), indent=2) + "\n")
    return 0 if report.passed else 1


def module_evaluation(
    model: Path, args: argparse.Namespace
) -> tuple[nn.Module, np.ndarray, np.ndarray | None]:
    """The user's module as the oracle, and the samples ``export-module`` checked on."""
    from training.module_data import first, read_samples, synthetic_inputs
    from training.own_model import module_oracle

    if args.checkpoint is not None or args.label_column is not None:
        flag = "--checkpoint" if args.checkpoint is not None else "--label-column"
        raise UsageError(f"{flag} is for checkpoints; --module verifies against the module")
    stats = standardization(args)
    card = read_model_card(model)
    shape = card.input.sample_shape
    image = card.input.image
    scale = image.files.scale if image is not None and image.files is not None else None
    if args.data is not None:
        samples = read_samples(args.data, shape, card.labels)
    else:
        samples = synthetic_inputs(shape, scale, stats)
    module, _ = load_user_module(args.module, args.weights)
    samples = first(samples, args.verify_samples or VERIFY_SAMPLES)
    return module_oracle(module, stats, card.input), samples.x, samples.y


def module_notes(model: Path, args: argparse.Namespace) -> list[str]:
    """What the module oracle was, and what the export recorded about its input."""
    stats = "none" if args.mean is None else f"mean {args.mean}, std {args.std}"
    data = args.data or "random inputs (no --data)"
    card = read_model_card(model)
    return [
        f"oracle: {args.module} (weights: {args.weights or 'the factory'}), "
        f"standardization: {stats}, data: {data}",
        f"the export's input: {card.input.description}",
    ]


def read_model_card(model: Path) -> ModelCard:
    """The card of the ONNX file at ``model``; ``UsageError`` if it has none."""
    try:
        return digest.read_card(model.read_bytes())
    except digest.DigestError as exc:
        raise UsageError(f"{model}: {exc}") from None
    except ValueError:
        raise UsageError(f"{model} is not a readable ONNX file") from None


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

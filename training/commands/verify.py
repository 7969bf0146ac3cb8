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

import numpy as np

from bnfold import digest
from bnfold.card import ModelCard
from training.atomic import write_text_atomic
from training.checkpoint import Checkpoint, load_checkpoint
from training.commands.export_module_options import ModuleOptions
from training.commands.verify_options import VerifyModule, VerifyOptions, VerifyTarget
from training.console import print_table
from training.data import load_file_data, load_splits
from training.errors import UsageError
from training.option_parser import from_args
from training.reference import reference_model
from training.verify import VerifyReport, verify_model

MODULE_HINT = (
    "a module model fails when verify is not given the export's --weights, --mean/--std and --data"
)


def run(args: argparse.Namespace) -> int:
    """Verify, print, save ``verify.json``; exit 1 when a check fails."""
    target: VerifyTarget = from_args(VerifyTarget, args)
    split = from_args(VerifyOptions, args).split
    spec = from_args(VerifyModule, args).module
    options: ModuleOptions = from_args(ModuleOptions, args)
    model = target.model
    if not model.is_file():
        raise UsageError(f"model file {model} does not exist")
    if spec is not None:
        report = verify_module_model(model, spec, target, options)
    else:
        given = [f for f in ("weights", "mean", "std", "verify_samples") if getattr(options, f)]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise UsageError(f"{flag} is for --module (a model written by export-module)")
        ckpt = load_checkpoint(target.checkpoint or model.parent / "checkpoint.pt")
        x, y = evaluation_data(ckpt, target.data, target.label_column, split)
        report = verify_model(model, reference_model(ckpt), x, y)
    show_report(report)
    write_text_atomic(model.parent / "verify.json", json.dumps(report.to_dict(), indent=2) + "\n")
    return 0 if report.passed else 1


def verify_module_model(
    model: Path, spec: str, target: VerifyTarget, options: ModuleOptions
) -> VerifyReport:
    """Verify ``model`` against the user's module, on the samples ``export-module`` used."""
    from training.commands.export_module import load_user_module, module_samples
    from training.module_data import first
    from training.own_model import module_oracle

    if target.checkpoint is not None or target.label_column is not None:
        flag = "--checkpoint" if target.checkpoint is not None else "--label-column"
        raise UsageError(f"{flag} is for checkpoints; --module verifies against the module")
    card = read_model_card(model)
    image = card.input.image
    scale = image.files.scale if image is not None and image.files is not None else None
    data = None if target.data is None else Path(target.data)
    samples = module_samples(data, card.input.sample_shape, card.labels, scale, options)
    module, weights = load_user_module(spec, options.weights)
    samples = first(samples, options.samples)
    oracle = module_oracle(module, options.standardization, card.input)
    report = verify_model(model, oracle, samples.x, samples.y)
    stats = options.standardization
    shown = "none" if stats is None else f"mean {list(stats[0])}, std {list(stats[1])}"
    notes = [
        f"oracle: {spec}, weights {weights}, standardization {shown}, "
        f"{len(samples)} samples of {samples.name}",
        f"the export's input: {card.input.description}",
    ]
    if not report.passed:
        notes.append(MODULE_HINT)
    return replace(report, notes=[*report.notes, *notes])


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

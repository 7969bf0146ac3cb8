"""``python -m training all``: train -> fold -> export -> verify in one command."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from training.atomic import write_text_atomic
from training.checkpoint import load_checkpoint
from training.commands.export import add_export_arguments, export_rows
from training.commands.train import add_train_arguments, run_train
from training.commands.verify import add_verify_arguments, evaluation_data, show_report
from training.console import print_table
from training.distributed import DistEnv
from training.export import export_checkpoint
from training.reference import reference_model
from training.verify import verify_model


def register(subparsers: Any) -> None:
    """Add the ``all`` sub-command."""
    parser = subparsers.add_parser(
        "all",
        help="train, fold, export and verify in one go",
        description="Train a model (same options as `train`), fold every BatchNorm, export "
        "OUT/model.onnx with its card, verify it against the unfolded model, and print a summary.",
    )
    add_train_arguments(parser)
    add_export_arguments(parser)
    add_verify_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the four steps; exit 1 if verification fails."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    checkpoint = run_train(args)
    timings["train"] = time.perf_counter() - start
    if not DistEnv.from_environ().is_main:
        return 0  # under torchrun only rank 0 has the checkpoint to export

    start = time.perf_counter()
    result = export_checkpoint(
        checkpoint,
        checkpoint.parent,
        name=args.name,
        allow_unfolded=args.allow_unfolded,
        opset=args.opset,
    )
    timings["fold + export"] = time.perf_counter() - start
    print_table("export", export_rows(result))

    start = time.perf_counter()
    ckpt = load_checkpoint(checkpoint)
    x, y = evaluation_data(ckpt, None, None, args.split)
    report = verify_model(result.path, reference_model(ckpt), x, y)
    timings["verify"] = time.perf_counter() - start
    show_report(report)
    write_text_atomic(
        result.path.parent / "verify.json", json.dumps(report.to_dict(), indent=2) + "\n"
    )

    metrics = ckpt.metrics
    print_table(
        "summary",
        [
            *((f"{k}", v) for k, v in sorted(metrics.items()) if k.startswith(("val_", "test_"))),
            ("test accuracy (ONNX Runtime)", report.parity.accuracy),
            *((f"time: {step}", f"{seconds:.1f} s") for step, seconds in timings.items()),
            ("model", result.path),
            ("verified", report.passed),
        ],
    )
    return 0 if report.passed else 1

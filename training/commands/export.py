"""``python -m training export CHECKPOINT --out DIR``: fold and export to ONNX with a card."""

from __future__ import annotations

import argparse
from typing import Any

from training.console import print_table
from training.export import DEFAULT_OPSET, ExportResult, export_checkpoint


def add_export_arguments(
    parser: argparse.ArgumentParser,
    name_default: str = "<dataset>-<model kind>, e.g. digits-cnn",
) -> None:
    """Options shared by ``export``, ``all`` and ``export-module``."""
    parser.add_argument("--name", help=f"model name on the service (default: {name_default})")
    parser.add_argument(
        "--allow-unfolded",
        action="store_true",
        help="export BatchNorm layers that cannot be folded as BatchNormalization nodes "
        "instead of failing (the model card records it)",
    )
    parser.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help="ONNX opset, at least 17 (default: %(default)s)",
    )


def register(subparsers: Any) -> None:
    """Add the ``export`` sub-command."""
    parser = subparsers.add_parser(
        "export",
        help="fold BatchNorm and export a checkpoint to ONNX with a model card",
        description="Fold input standardization and every BatchNorm into the weights, export to "
        "ONNX (logits and softmax probabilities), check the graph and write DIR/model.onnx "
        "atomically with the model card and golden samples in its metadata.",
    )
    parser.add_argument("checkpoint", help="checkpoint.pt written by `python -m training train`")
    parser.add_argument("--out", required=True, help="output folder for model.onnx and card.json")
    add_export_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export and print the summary."""
    result = export_checkpoint(
        args.checkpoint,
        args.out,
        name=args.name,
        allow_unfolded=args.allow_unfolded,
        opset=args.opset,
    )
    print_table("export", export_rows(result))
    return 0


def export_rows(result: ExportResult) -> list[tuple[str, object]]:
    """The summary rows of an export."""
    card = result.card
    return [
        ("model", result.path),
        ("name", card.name),
        ("size", f"{result.size_bytes / 1024:.1f} KiB"),
        ("BatchNorm folded / total", f"{card.fold.folded} / {card.fold.bn_total}"),
        ("BatchNormalization nodes", card.bn_nodes),
        ("runtime-constant nodes", result.runtime_constant_nodes),
        ("max fold relative error", card.fold.max_relative_error),
        ("golden samples", f"{len(card.golden)}, max |Δp| {result.golden_max_abs_diff:.2e}"),
        ("test-time statistics", card.stats_mode),
        ("version (digest)", f"{card.version} ({card.digest[:16]}…)"),
    ]

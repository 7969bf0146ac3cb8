"""``python -m training export CHECKPOINT --out DIR``: fold and export to ONNX with a card."""

from __future__ import annotations

import argparse

from training.commands.export_options import ExportOptions, ExportTarget
from training.console import print_table
from training.export import ExportResult, export_checkpoint
from training.option_parser import from_args


def run(args: argparse.Namespace) -> int:
    """Export and print the summary."""
    target: ExportTarget = from_args(ExportTarget, args)
    options: ExportOptions = from_args(ExportOptions, args)
    result = export_checkpoint(
        target.checkpoint,
        target.out,
        name=options.name,
        allow_unfolded=options.allow_unfolded,
        opset=options.opset,
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

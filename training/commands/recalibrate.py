"""``python -m training recalibrate CHECKPOINT --data TARGET --out DIR``: AdaBN, exported."""

from __future__ import annotations

import argparse
import sys

from training.commands.export import export_rows
from training.commands.recalibrate_options import RecalibrateOptions, RecalibrateTarget
from training.commands.verify import show_report
from training.console import print_table
from training.option_parser import from_args
from training.recalibrate import RecalibrationResult, VerificationFailed, recalibrate_checkpoint


def run(args: argparse.Namespace) -> int:
    """Recalibrate, export, verify and print; exit 1 (nothing written) if verification fails."""
    target: RecalibrateTarget = from_args(RecalibrateTarget, args)
    options: RecalibrateOptions = from_args(RecalibrateOptions, args)
    try:
        result = recalibrate_checkpoint(
            target.checkpoint,
            target.data,
            target.out,
            parent=target.parent,
            label_column=options.label_column,
            labels=options.labels,
            evaluation=options.eval,
            name=options.name,
            opset=options.opset,
            verify_samples=options.verify_samples,
            holdout=options.holdout,
        )
    except VerificationFailed as failed:
        show_report(failed.report)
        print(f"error: {failed}", file=sys.stderr)
        return 1
    print_table("export", export_rows(result.export))
    show_report(result.verify)
    print_table("recalibrate", recalibration_rows(result))
    return 0


def recalibration_rows(result: RecalibrationResult) -> list[tuple[str, object]]:
    """The summary rows of a recalibration."""
    rows: list[tuple[str, object]] = [
        ("parent", f"{result.parent} (version {result.parent_version})"),
        ("target data", f"{result.target} ({result.target_samples} samples for the statistics)"),
        ("drift monitor", "calibrated on the held-out part" if result.monitored else "none"),
    ]
    for change in result.changes:
        rows.append(
            (
                f"statistics moved: {change.name} ({change.channels} channels)",
                f"mean shift {change.mean_shift:.3f} std (max {change.max_shift:.3f}), "
                f"std ratio {change.mean_scale:.3f}",
            )
        )
    for acc in result.accuracy:
        rows.append(
            (
                f"accuracy on {acc.data} ({acc.samples})",
                f"{acc.before:.2%} before -> {acc.after:.2%} after",
            )
        )
    rows.append(("version", result.export.card.version))
    return rows

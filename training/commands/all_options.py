"""Options of ``python -m training all``: those of ``train``, plus export's and verify's."""

from __future__ import annotations

from typing import Any

from training.commands.export_options import ExportOptions
from training.commands.train_options import add_train_arguments
from training.commands.verify_options import VerifyOptions
from training.option_parser import add_options


def register(subparsers: Any) -> None:
    """Add the ``all`` sub-command."""
    parser = subparsers.add_parser(
        "all",
        help="train, fold, export and verify in one go",
        description="Train a model (same options as `train`), fold every BatchNorm, export "
        "OUT/model.onnx with its card, verify it against the unfolded model, and print a summary.",
    )
    add_train_arguments(parser)
    add_options(parser, ExportOptions)
    add_options(parser, VerifyOptions)

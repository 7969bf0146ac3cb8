"""Options of ``python -m training export`` (``ExportOptions`` are shared with ``all``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.config import ConsoleOptions
from training.option_parser import add_options
from training.options import check_fields, option, options_class


@options_class
class ExportOptions:
    """How a checkpoint becomes an ONNX file."""

    name: str | None = option(
        None,
        "export",
        "model name on the service (default: <dataset>-<model kind>, e.g. digits-cnn; "
        "export-module: the module file's name)",
    )
    allow_unfolded: bool = option(
        False,
        "export",
        "export BatchNorm layers that cannot be folded as BatchNormalization nodes "
        "instead of failing (the model card records it)",
    )
    # Equal to training.export.DEFAULT_OPSET (tests/training/commands/test_cli.py checks).
    opset: int = option(18, "export", "ONNX opset", ge=17)

    def validate(self) -> None:
        """Raise ``UsageError`` naming the first bad option."""
        check_fields(self)


@options_class
class ExportTarget:
    """What ``export`` reads and where it writes."""

    checkpoint: Path = option(
        help="checkpoint.pt written by `python -m training train`", positional=True
    )
    out: Path = option(help="output folder for model.onnx and card.json")


def register(subparsers: Any) -> None:
    """Add the ``export`` sub-command."""
    parser = subparsers.add_parser(
        "export",
        help="fold BatchNorm and export a checkpoint to ONNX with a model card",
        description="Fold input standardization and every BatchNorm into the weights, export to "
        "ONNX (logits and softmax probabilities), check the graph and write DIR/model.onnx "
        "atomically with the model card and golden samples in its metadata.",
    )
    add_options(parser, ExportTarget)
    add_options(parser, ExportOptions)
    add_options(parser, ConsoleOptions)

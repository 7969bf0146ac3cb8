"""Options of ``python -m training fold``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.config import ConsoleOptions
from training.option_parser import add_options
from training.options import option, options_class


@options_class
class FoldOptions:
    """Which checkpoint to fold, on how many samples, and where the JSON report goes."""

    checkpoint: Path = option(
        help="checkpoint.pt written by `python -m training train`", positional=True
    )
    json: Path | None = option(
        None, help="also write the full report as JSON to OUT", metavar="OUT"
    )
    samples: int = option(256, help="training samples used to verify the folds", ge=1)


def register(subparsers: Any) -> None:
    """Add the ``fold`` sub-command."""
    parser = subparsers.add_parser(
        "fold",
        help="fold BatchNorm into the weights and print what was folded and why not",
        description="Fold every BatchNorm of a checkpoint's network into the neighbouring "
        "Linear/Conv layer, verify each fold and print the report as a table.",
    )
    add_options(parser, FoldOptions)
    add_options(parser, ConsoleOptions)

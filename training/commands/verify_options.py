"""Options of ``python -m training verify`` (``VerifyOptions`` are shared with ``all``;
``ModuleOptions``, for ``--module``, with ``export-module``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from training.commands.export_module_options import ModuleOptions
from training.config import ConsoleOptions
from training.option_parser import add_options
from training.options import option, options_class

Split = Literal["train", "val", "test"]


@options_class
class VerifyOptions:
    """Which samples the export is checked on."""

    split: Split = option("test", "verify", "which split of the checkpoint's dataset to check on")


@options_class
class VerifyTarget:
    """What ``verify`` checks, against which checkpoint, on which data."""

    model: Path = option(help="model.onnx written by `python -m training export`", positional=True)
    checkpoint: Path | None = option(
        None,
        help="the checkpoint the model was exported from (default: checkpoint.pt beside the model)",
    )
    data: str | None = option(
        None, help="check on this CSV or .npz file instead of a split of the checkpoint's dataset"
    )
    label_column: str | None = option(
        None, help="with a CSV --data: the label column (default: the checkpoint's)"
    )


@options_class
class VerifyModule:
    """A model written by ``export-module``: verified against the user's module."""

    module: str | None = option(
        None,
        "your module",
        "verify a model written by export-module against this module instead of a checkpoint "
        "(give the same --weights, --mean/--std and --data as the export; without --data: "
        "the same random inputs)",
        metavar="FILE.py:FACTORY",
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
    add_options(parser, VerifyTarget)
    add_options(parser, VerifyOptions)
    add_options(parser, VerifyModule)
    add_options(parser, ModuleOptions)
    add_options(parser, ConsoleOptions)

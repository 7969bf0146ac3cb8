"""Options of ``python -m training recalibrate``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from training.config import ConsoleOptions
from training.option_parser import add_options
from training.options import check_fields, option, options_class

# Equal to training.recalibrate.VERIFY_SAMPLES (tests/training/commands checks).
VERIFY_SAMPLES = 512


@options_class
class RecalibrateTarget:
    """Which checkpoint, which target-domain data, and where the new model goes."""

    checkpoint: Path = option(
        help="checkpoint.pt written by `train` (or by `recalibrate`)", positional=True
    )
    data: str = option(
        help="target-domain samples, labels optional: a CSV (the model's feature columns), "
        "an .npz (X, optionally y) or an image folder (images, or DIR/<class>/images)",
        metavar="TARGET",
    )
    out: Path = option(help="output folder (new or empty) for the recalibrated model")
    parent: Path | None = option(
        None,
        help="the model the checkpoint was exported as (default: model.onnx beside the "
        "checkpoint); its version is the new card's parent",
        metavar="MODEL.onnx",
    )


@options_class
class RecalibrateOptions:
    """What is read as labels, what is reported, how the new model is exported."""

    label_column: str | None = option(
        None,
        "recalibrate",
        "a CSV's label column (default: the checkpoint's, if the file has it); labels are "
        "never used to recalibrate, only to report accuracy before and after",
    )
    labels: Literal["auto", "require", "ignore"] = option(
        "auto",
        "recalibrate",
        "auto: report accuracy when TARGET has labels; require: fail without them; "
        "ignore: never read them",
    )
    eval: str | None = option(
        None,
        "recalibrate",
        "a labelled file (CSV, .npz or image folder) to report accuracy before and after on",
        metavar="FILE",
    )
    name: str | None = option(
        None, "recalibrate", "model name on the service (default: the parent model's name)"
    )
    # Equal to training.export.DEFAULT_OPSET (tests/training/commands/test_cli.py checks).
    opset: int = option(18, "recalibrate", "ONNX opset", ge=17)
    holdout: float = option(
        0.2,
        "recalibrate",
        "share of TARGET kept out of the statistics to calibrate the drift monitor's "
        "thresholds (0: no monitor; so is a held-out part under 16 samples)",
        ge=0,
        lt=1,
    )
    verify_samples: int = option(
        VERIFY_SAMPLES,
        "recalibrate",
        "verify on up to N samples spread over TARGET (each runs alone and in 63 batches)",
        metavar="N",
        ge=2,
    )

    def validate(self) -> None:
        """Raise ``UsageError`` naming the first bad option."""
        check_fields(self)


def register(subparsers: Any) -> None:
    """Add the ``recalibrate`` sub-command."""
    parser = subparsers.add_parser(
        "recalibrate",
        help="adapt a model to unlabelled target-domain data (AdaBN) and export it",
        description="Recompute the input standardization and the exact statistics of every "
        "BatchNorm layer on target-domain data with the trained weights (AdaBN, Li et al. "
        "2016), fold and export a new version whose card names its parent version, the "
        "target data's SHA-256 and sample count, verify it against the unfolded recalibrated "
        "model, and write DIR/model.onnx, card.json, checkpoint.pt, verify.json and "
        "recalibration.json as a whole. With labels, prints accuracy before and after. "
        "Exits 1 (writing nothing) if verification fails.",
    )
    add_options(parser, RecalibrateTarget)
    add_options(parser, RecalibrateOptions)
    add_options(parser, ConsoleOptions)

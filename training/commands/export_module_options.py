"""Options of ``python -m training export-module`` (``ModuleOptions`` are shared with
``verify --module``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from training.commands.export_options import ExportOptions
from training.config import ConsoleOptions
from training.errors import UsageError
from training.option_parser import add_options
from training.options import check_fields, option, options_class

MODULE = "your module"
IMAGE_FILES = "image files"
# Equal to training.own_model.VERIFY_SAMPLES (tests/training/commands checks).
VERIFY_SAMPLES = 256
Resize = Literal["bilinear", "nearest", "bicubic", "lanczos", "none"]


@options_class
class ModuleOptions:
    """The user's weights and input standardization, and how many samples check the export."""

    weights: Path | None = option(
        None,
        MODULE,
        "a state_dict (torch.save(model.state_dict(), W.pt)), read with weights_only=True "
        "(default: the weights the factory sets)",
        metavar="W.pt",
    )
    mean: tuple[float, ...] | None = option(
        None,
        MODULE,
        "input standardization (x - mean) / std that the module expects, one value per "
        "channel or feature (or one for all), e.g. 0.485,0.456,0.406; needs --std",
        metavar="M[,M...]",
    )
    std: tuple[float, ...] | None = option(
        None, MODULE, "see --mean, e.g. 0.229,0.224,0.225", metavar="S[,S...]", gt=0
    )
    verify_samples: int | None = option(
        None,
        MODULE,
        "fold, golden samples and verification use the first N samples of --data (or of the "
        f"random inputs) (default: {VERIFY_SAMPLES})",
        metavar="N",
        ge=2,
    )

    def validate(self) -> None:
        """Raise ``UsageError`` naming the first bad option."""
        check_fields(self)
        if (self.mean is None) != (self.std is None):
            raise UsageError("--mean and --std go together: give both or neither")

    @property
    def standardization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """``(mean, std)``, or None."""
        return None if self.mean is None or self.std is None else (self.mean, self.std)

    @property
    def samples(self) -> int:
        """How many samples check the export."""
        return self.verify_samples or VERIFY_SAMPLES


@options_class
class ExportModuleTarget:
    """Which module, what it takes and returns, on which data, and where the export goes."""

    module: str = option(
        help="a .py file and a function or class in it that returns the nn.Module",
        positional=True,
        metavar="FILE.py:FACTORY",
    )
    input_shape: tuple[int, ...] = option(
        help="one sample's shape: C,H,W for images, F for tabular features",
        metavar="C,H,W|F",
        ge=1,
    )
    labels: tuple[str, ...] = option(
        help="class names in output order: comma-separated, or a .txt file with one per line",
        metavar="a,b,c|FILE.txt",
    )
    out: Path = option(help="output folder for model.onnx, card.json and verify.json")
    feature_names: tuple[str, ...] | None = option(
        None,
        help="tabular: the feature names clients send, comma-separated or a .txt file "
        "(default: the --data file's feature_names, else x0, x1, ...)",
        metavar="a,b,c|FILE.txt",
    )
    data: Path | None = option(
        None,
        help="raw samples to fold, check and verify on: an .npz with X (N, *input shape), "
        "optional y (class ids or label names) and feature_names (default: random inputs)",
        metavar="DATA.npz",
    )

    def validate(self) -> None:
        """Raise ``UsageError`` naming the first bad option."""
        check_fields(self)
        if len(self.input_shape) not in (1, 3):
            raise UsageError(
                "--input-shape must be C,H,W (an image) or F (features), got "
                + ",".join(map(str, self.input_shape))
            )


@options_class
class ImageFileOptions:
    """How the service decodes an uploaded image file for an image model (1 or 3 channels)."""

    pixel_scale: float = option(
        1 / 255,
        IMAGE_FILES,
        "tensor value = pixel (0..255) x S; 1/255 is torchvision's ToTensor()",
        metavar="S",
        gt=0,
    )
    resize: Resize = option(
        "bilinear",
        IMAGE_FILES,
        "Pillow filter that resizes an uploaded file of another size (none: files must "
        "have the input size)",
    )
    tensors_only: bool = option(
        False, IMAGE_FILES, "do not accept image files: the service takes tensors only"
    )


def register(subparsers: Any) -> None:
    """Add the ``export-module`` sub-command."""
    parser = subparsers.add_parser(
        "export-module",
        help="fold, export and verify your own BatchNorm nn.Module",
        description="Build the module FACTORY() from FILE.py, load --weights, fold every "
        "foldable BatchNorm (and the --mean/--std standardization, exactly), export OUT/model.onnx "
        "with its model card and golden samples, and verify it against the unfolded module "
        "(one sample at a time, |Δp| <= 1e-5; batch independence) on --data or, without it, on "
        "random inputs. Writes model.onnx, card.json and verify.json; exits 1 if verification "
        "fails. The service serves the file as is.",
    )
    add_options(parser, ExportModuleTarget)
    add_options(parser, ModuleOptions)
    add_options(parser, ImageFileOptions)
    add_options(parser, ExportOptions)
    add_options(parser, ConsoleOptions)

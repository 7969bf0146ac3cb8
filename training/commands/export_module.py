"""``python -m training export-module FILE.py:FACTORY --weights W.pt ...``: your own module.

Builds the module from its factory, loads a ``state_dict``, and runs
``training.export_model``: fold every foldable BatchNorm, export ONNX with a
card and golden samples, verify against the unfolded module; writes
``model.onnx``, ``card.json`` and ``verify.json`` into ``--out``. Every bad
input (file, factory, weights, shape, labels, data) is a one-line error with
exit status 2 before any work. The option declarations are kept together here
(``register``, ``add_module_arguments``); nothing heavy is imported until ``run``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

RESIZE_FILTERS = ("bilinear", "nearest", "bicubic", "lanczos", "none")
VERIFY_SAMPLES = 256  # equal to training.own_model.VERIFY_SAMPLES (a test checks)


def floats(text: str) -> list[float]:
    """``0.485,0.456,0.406`` -> finite floats (an argparse ``type``)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError("values must be finite")
    return values


def input_shape(text: str) -> tuple[int, ...]:
    """``3,32,32`` (C,H,W) or ``30`` (F) -> a positive shape (an argparse ``type``)."""
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W or F, got {text!r}") from None
    if len(shape) not in (1, 3) or any(d < 1 for d in shape):
        raise argparse.ArgumentTypeError(
            f"expected C,H,W (an image) or F (features), positive, got {text!r}"
        )
    return shape


def names(text: str) -> list[str]:
    """``a,b,c`` or a text file with one name per line (an argparse ``type``)."""
    path = Path(text)
    if path.is_file():
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise argparse.ArgumentTypeError(f"cannot read {text}: {exc}") from None
        values = [line.strip() for line in lines if line.strip()]
    elif path.suffix.lower() == ".txt":
        raise argparse.ArgumentTypeError(f"file not found: {text}")
    else:
        values = [v.strip() for v in text.split(",")]
    if not values or any(not v for v in values):
        raise argparse.ArgumentTypeError(f"empty name in {text!r}")
    return values


def pixel_scale(text: str) -> float | None:
    """A positive float, or ``none`` (tensors only)."""
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number or none, got {text!r}"
        ) from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def add_module_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``export-module`` and ``verify --module``."""
    parser.add_argument(
        "--weights",
        metavar="W.pt",
        help="a state_dict (torch.save(model.state_dict(), W.pt)), read with weights_only=True "
        "(default: the weights the factory sets)",
    )
    parser.add_argument(
        "--mean",
        type=floats,
        metavar="M[,M...]",
        help="input standardization (x - mean) / std the module expects, one value per channel "
        "or feature (or one for all), e.g. 0.485,0.456,0.406; needs --std",
    )
    parser.add_argument(
        "--std", type=floats, metavar="S[,S...]", help="see --mean, e.g. 0.229,0.224,0.225"
    )
    parser.add_argument(
        "--verify-samples",
        type=int,
        metavar="N",
        help=f"fold, golden samples and verification use the first N samples of --data "
        f"(default: {VERIFY_SAMPLES})",
    )


def register(subparsers: Any) -> None:
    """Add the ``export-module`` sub-command."""
    from training.commands.export import add_export_arguments

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
    parser.add_argument(
        "module",
        metavar="FILE.py:FACTORY",
        help="a .py file and a function or class in it returning the nn.Module",
    )
    parser.add_argument(
        "--input-shape",
        type=input_shape,
        required=True,
        metavar="C,H,W|F",
        help="one sample's shape: C,H,W for images, F for tabular features",
    )
    parser.add_argument(
        "--labels",
        type=names,
        required=True,
        metavar="a,b,c|FILE.txt",
        help="class names in output order, comma-separated or one per line in a .txt file",
    )
    parser.add_argument(
        "--feature-names",
        type=names,
        metavar="a,b,c|FILE.txt",
        help="tabular: the feature names clients send (default: the --data file's "
        "feature_names, else x0, x1, ...)",
    )
    parser.add_argument(
        "--data",
        metavar="DATA.npz",
        help="raw samples to fold, check and verify on: an .npz with X (N, *input shape) and "
        "optional y (class ids or label names) and feature_names (default: random inputs)",
    )
    add_module_arguments(parser)
    parser.add_argument(
        "--pixel-scale",
        type=pixel_scale,
        default=1 / 255,
        metavar="S|none",
        help="images: tensor value = pixel (0..255) x S, how the service decodes an uploaded "
        "image file (default: 1/255, torchvision's ToTensor); none: tensors only",
    )
    parser.add_argument(
        "--resize",
        choices=RESIZE_FILTERS,
        default="bilinear",
        help="images: Pillow filter that resizes an uploaded file of another size "
        "(none: files must have the input size; default: %(default)s)",
    )
    parser.add_argument("--out", required=True, help="output folder for model.onnx and card.json")
    add_export_arguments(parser, name_default="FILE's name, e.g. resnet")
    parser.set_defaults(func=run)


def standardization(args: argparse.Namespace) -> tuple[list[float], list[float]] | None:
    """``(mean, std)`` from ``--mean``/``--std``; ``UsageError`` if only one is given."""
    from training.errors import UsageError

    if (args.mean is None) != (args.std is None):
        raise UsageError("--mean and --std go together: give both or neither")
    if args.verify_samples is not None and args.verify_samples < 2:
        raise UsageError(f"--verify-samples must be at least 2, got {args.verify_samples}")
    return None if args.mean is None else (args.mean, args.std)


def load_user_module(spec: str, weights: str | None) -> tuple[Any, str]:
    """The factory's module with ``weights`` loaded (eval mode), and where they came from."""
    from training.user_module import build_module, load_weights

    model = build_module(spec)
    if weights is None:
        return model, "set by the factory"
    return model, f"{weights} (sha256 {load_weights(model, weights)[:16]}…)"


def run(args: argparse.Namespace) -> int:
    """Check every input, export, verify, print; exit 1 if verification fails."""
    from training.commands.export import export_rows
    from training.commands.verify import show_report
    from training.console import print_table
    from training.module_data import read_samples, synthetic_inputs
    from training.own_model import export_model

    stats = standardization(args)
    shape: tuple[int, ...] = args.input_shape
    scale = args.pixel_scale if len(shape) == 3 else None
    if args.data is not None:
        samples = read_samples(args.data, shape, args.labels)
    else:
        samples = synthetic_inputs(shape, scale, stats)
    model, weights = load_user_module(args.module, args.weights)
    result = export_model(
        model,
        samples.x,
        args.out,
        labels=args.labels,
        feature_names=args.feature_names,
        standardization=stats,
        data=samples,
        name=args.name or Path(args.module.rpartition(":")[0]).stem,
        pixel_scale=scale,
        resize=None if args.resize == "none" else args.resize,
        allow_unfolded=args.allow_unfolded,
        opset=args.opset,
        verify_samples=args.verify_samples or VERIFY_SAMPLES,
    )
    rows = [("module", args.module), ("weights", weights), *export_rows(result.export)]
    if result.standardization is not None:
        rows.append(("input standardization", result.standardization.describe()))
    rows.append(("checked on", result.samples))
    print_table("export-module", rows)
    show_report(result.verify)
    return 0 if result.passed else 1

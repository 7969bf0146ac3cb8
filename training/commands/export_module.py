"""``python -m training export-module FILE.py:FACTORY --weights W.pt ...``: your own module.

Builds the module from its factory, loads the ``state_dict`` and runs
``training.export_model``: fold every foldable BatchNorm, export ONNX with a
card and golden samples, verify against the unfolded module; writes
``model.onnx``, ``card.json`` and ``verify.json`` into ``--out``. Every bad
input (file, factory, weights, shape, labels, data) is a one-line error with
exit status 2 before any work. Options: ``export_module_options``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from torch import nn

from training.commands.export import export_rows
from training.commands.export_module_options import (
    ExportModuleTarget,
    ImageFileOptions,
    ModuleOptions,
)
from training.commands.export_options import ExportOptions
from training.commands.verify import show_report
from training.console import print_table
from training.errors import UsageError
from training.module_data import SampleSet, read_samples, synthetic_inputs
from training.option_parser import from_args
from training.own_model import export_model
from training.user_module import build_module, load_weights


def run(args: argparse.Namespace) -> int:
    """Check every input, export, verify, print; exit 1 if verification fails."""
    target: ExportModuleTarget = from_args(ExportModuleTarget, args)
    module: ModuleOptions = from_args(ModuleOptions, args)
    files: ImageFileOptions = from_args(ImageFileOptions, args)
    export: ExportOptions = from_args(ExportOptions, args)
    shape = target.input_shape
    labels = names_from(target.labels, "--labels")
    feature_names = None if target.feature_names is None else names_from(target.feature_names)
    scale = None if len(shape) != 3 or files.tensors_only else files.pixel_scale
    samples = module_samples(target.data, shape, labels, scale, module)
    model, weights = load_user_module(target.module, module.weights)
    result = export_model(
        model,
        samples.x,
        target.out,
        labels=labels,
        feature_names=feature_names,
        standardization=module.standardization,
        data=samples,
        name=export.name or Path(target.module.rpartition(":")[0]).stem,
        pixel_scale=scale,
        resize=None if files.resize == "none" else files.resize,
        allow_unfolded=export.allow_unfolded,
        opset=export.opset,
        verify_samples=module.samples,
    )
    rows = [("module", target.module), ("weights", weights), *export_rows(result.export)]
    if result.standardization is not None:
        rows.append(("input standardization", result.standardization.describe()))
    rows.append(("checked on", result.samples))
    print_table("export-module", rows)
    show_report(result.verify)
    return 0 if result.passed else 1


def names_from(values: tuple[str, ...], flag: str = "--feature-names") -> list[str]:
    """Names given on the command line, or read from the one ``.txt`` file given (one a line)."""
    if len(values) == 1 and values[0].lower().endswith(".txt"):
        path = Path(values[0])
        if not path.is_file():
            raise UsageError(f"{flag}: file not found: {path}")
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{flag}: cannot read {path}: {exc}") from None
        names = [line.strip() for line in lines if line.strip()]
        if not names:
            raise UsageError(f"{flag}: {path} holds no names")
        return names
    return list(values)


def module_samples(
    data: Path | None,
    shape: tuple[int, ...],
    labels: list[str],
    pixel_scale: float | None,
    module: ModuleOptions,
) -> SampleSet:
    """``--data``, or the seeded random inputs that ``verify --module`` re-creates."""
    if data is not None:
        return read_samples(data, shape, labels)
    return synthetic_inputs(shape, pixel_scale, module.standardization)


def load_user_module(spec: str, weights: Path | None) -> tuple[nn.Module, str]:
    """The factory's module with ``weights`` loaded (eval mode), and where they came from."""
    model = build_module(spec)
    if weights is None:
        return model, "set by the factory"
    return model, f"{weights} (sha256 {load_weights(model, weights)[:16]}…)"

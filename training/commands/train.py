"""``python -m training train``: train a BatchNorm network and write its run folder.

The run folder (``--out``) receives, each written atomically:
``checkpoint.pt``, ``metrics.jsonl`` (one JSON object per epoch),
``summary.json`` (validation/test accuracy under both EMA and exact BN
statistics, timings, configs) and ``plots/*.png``.

Under ``torchrun --nproc_per_node=N -m training train ...`` every process
trains its share of each batch and only rank 0 writes files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from training import distributed as tdist
from training.commands.train_options import (
    DEFAULT_DROPOUT,
    DEFAULT_LABEL_SMOOTHING,
    DEFAULT_WIDTHS,
    DESCRIPTION,
    add_train_arguments,
)
from training.config import ModelConfig, ModelKind, TrainConfig
from training.data import Splits, load_splits, make_data_spec
from training.distributed import DistEnv
from training.errors import UsageError
from training.run_folder import write_run_folder
from training.train import check_batch_size, fit, resolve_device

__all__ = ["add_train_arguments", "configs_from_args", "register", "run_train"]


def register(subparsers: Any) -> None:
    """Add the ``train`` sub-command."""
    parser = subparsers.add_parser(
        "train",
        help="train a BatchNorm network and write its run folder",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_train_arguments(parser)
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    run_train(args)
    return 0


def configs_from_args(args: argparse.Namespace, splits: Splits) -> tuple[ModelConfig, TrainConfig]:
    """The validated model and training configs that ``args`` ask for on ``splits``."""
    kind: ModelKind = "cnn" if splits.kind == "image" else "mlp"
    if args.model != "auto":
        kind = "cnn" if args.model == "cnn" else "mlp"
    if kind == "cnn" and splits.kind != "image":
        raise UsageError("--model cnn needs image data (an .npz with 3-D or 4-D X)")
    if kind == "mlp" and splits.kind != "tabular":
        raise UsageError("--model mlp needs tabular data; use --model cnn for images")
    model_config = ModelConfig(
        kind=kind,
        in_shape=splits.sample_shape,
        num_classes=len(splits.labels),
        widths=tuple(args.widths or DEFAULT_WIDTHS[kind]),
        dropout=DEFAULT_DROPOUT[kind] if args.dropout is None else args.dropout,
        bn_momentum=args.bn_momentum,
        bn_eps=args.bn_eps,
        bn_position=args.bn_position,
    )
    model_config.validate()
    train_config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        momentum=args.momentum,
        schedule=args.schedule,
        label_smoothing=(
            DEFAULT_LABEL_SMOOTHING[kind] if args.label_smoothing is None else args.label_smoothing
        ),
        augment_shift=args.augment_shift,
        patience=args.patience,
        stats=args.stats,
        exact_inputs=args.exact_inputs,
        seed=args.seed,
        device=args.device,
        sync_bn=args.sync_bn,
    )
    train_config.validate()
    return model_config, train_config


def run_train(args: argparse.Namespace) -> Path:
    """Train as ``args`` say, write the run folder (rank 0), return the checkpoint path.

    Every check of the user's input runs before training starts.
    """
    env = DistEnv.from_environ()
    spec = make_data_spec(
        args.dataset, args.label_column, args.val_fraction, args.test_fraction, args.split_seed
    )
    splits = load_splits(spec)
    model_config, train_config = configs_from_args(args, splits)
    check_batch_size(len(splits.train), train_config, env)
    device = resolve_device(train_config.device)
    if train_config.sync_bn and not env.distributed and not args.quiet:
        print("note: --sync-bn has no effect in a single process", file=sys.stderr)
    out = Path(args.out) if args.out else Path("artifacts") / str(spec["name"])
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    log = None if args.quiet or not env.is_main else print
    if args.threads < 0:
        raise UsageError(f"--threads must be >= 0, got {args.threads}")
    if args.threads and device.type == "cpu":
        torch.set_num_threads(args.threads)
    tdist.setup(env, device)
    finished = False
    try:
        result = fit(splits, model_config, train_config, env, False if args.quiet else None, log)
        finished = True
    finally:
        tdist.teardown(env, finished)
    checkpoint = out / "checkpoint.pt"
    if result is not None:
        write_run_folder(out, result, splits, model_config, train_config, env)
        if log:
            log(f"wrote {out}/ (checkpoint.pt, metrics.jsonl, summary.json, plots/)")
    return checkpoint

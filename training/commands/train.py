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

from training import distributed as tdist
from training.config import (
    DEVICES,
    EXACT_INPUTS,
    OPTIMIZERS,
    SCHEDULES,
    STATS_MODES,
    ModelConfig,
    ModelKind,
    TrainConfig,
)
from training.data import Splits, load_splits, make_data_spec
from training.datasets import BUILTIN
from training.distributed import DistEnv
from training.errors import UsageError
from training.run_folder import write_run_folder
from training.train import check_batch_size, fit, resolve_device

# Chosen on the validation split (see benchmarks/bench_train.py).
DEFAULT_WIDTHS = {"cnn": (32, 64, 128), "mlp": (32,)}
DEFAULT_DROPOUT = {"cnn": 0.0, "mlp": 0.2}
_DEFAULTS = TrainConfig()


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 32,64, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"widths must be positive, got {text!r}")
    return widths


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every training option (including ``--out``) to ``parser``."""
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        default="digits",
        help=f"built-in dataset ({', '.join(BUILTIN)}) or a path to a .csv or .npz file "
        "(.npz: arrays X and y; X 2-D is tabular, 3-D/4-D are images) (default: digits)",
    )
    data.add_argument("--label-column", help="CSV only: the column that holds integer class ids")
    data.add_argument("--val-fraction", type=float, default=0.2, help="validation share (0.2)")
    data.add_argument("--test-fraction", type=float, default=0.2, help="held-out test share (0.2)")
    data.add_argument(
        "--split-seed", type=int, default=0, help="seed of the stratified split (default: 0)"
    )
    data.add_argument(
        "--out", type=Path, help="run folder to write (default: artifacts/<dataset name>)"
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        choices=("auto", "cnn", "mlp"),
        default="auto",
        help="network kind; auto = CNN for images, MLP for tabular data (default: auto)",
    )
    model.add_argument(
        "--widths",
        type=_widths,
        help="comma-separated channels (CNN) or hidden units (MLP), one BN block each "
        f"(default: {','.join(map(str, DEFAULT_WIDTHS['cnn']))} for CNN, "
        f"{','.join(map(str, DEFAULT_WIDTHS['mlp']))} for MLP)",
    )
    model.add_argument(
        "--dropout",
        type=float,
        help="dropout before the classifier (CNN) or after every block (MLP); 0 disables "
        f"(default: {DEFAULT_DROPOUT['cnn']} for CNN, {DEFAULT_DROPOUT['mlp']} for MLP)",
    )
    model.add_argument(
        "--bn-momentum",
        type=float,
        default=0.1,
        help="BN running-average momentum, PyTorch convention: new = (1-m)*old + m*batch (0.1)",
    )
    model.add_argument("--bn-eps", type=float, default=1e-5, help="BN epsilon (default: 1e-5)")
    model.add_argument(
        "--bn-position",
        choices=("before", "after"),
        default="before",
        help="BN before the ReLU (layer->BN->ReLU, layer has no bias) or after it "
        "(layer->ReLU->BN) (default: before)",
    )

    opt = parser.add_argument_group("optimization")
    opt.add_argument(
        "--epochs", type=int, default=_DEFAULTS.epochs, help="training epochs (%(default)s)"
    )
    opt.add_argument(
        "--batch-size",
        type=int,
        default=_DEFAULTS.batch_size,
        help="global batch size, split over torchrun processes; the last partial batch of an "
        "epoch is dropped so BN never sees a 1-sample batch (default: %(default)s)",
    )
    opt.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default=_DEFAULTS.optimizer,
        help="sgd = SGD with Nesterov momentum (default: %(default)s)",
    )
    opt.add_argument(
        "--lr", type=float, default=_DEFAULTS.lr, help="peak learning rate (%(default)s)"
    )
    opt.add_argument(
        "--weight-decay",
        type=float,
        default=_DEFAULTS.weight_decay,
        help="weight decay of conv/linear weights (not BN or biases) (default: %(default)s)",
    )
    opt.add_argument(
        "--momentum",
        type=float,
        default=_DEFAULTS.momentum,
        help="momentum of sgd and rmsprop (default: %(default)s)",
    )
    opt.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=_DEFAULTS.schedule,
        help="per-step learning-rate schedule: onecycle (warm-up then anneal), cosine decay, "
        "or constant (default: %(default)s)",
    )
    opt.add_argument(
        "--label-smoothing",
        type=float,
        default=_DEFAULTS.label_smoothing,
        help="cross-entropy label smoothing (default: %(default)s)",
    )
    opt.add_argument(
        "--augment-shift",
        type=int,
        default=_DEFAULTS.augment_shift,
        help="images only: random translation of up to N pixels per axis while training; "
        "0 disables (default: %(default)s)",
    )
    opt.add_argument(
        "--patience",
        type=int,
        default=_DEFAULTS.patience,
        help="early stopping: stop after N epochs without a better validation accuracy "
        "(ties: lower loss) and keep the best epoch's weights; 0 trains all epochs "
        "(default: %(default)s)",
    )

    run = parser.add_argument_group("run")
    run.add_argument(
        "--stats",
        choices=STATS_MODES,
        default=_DEFAULTS.stats,
        help="BN statistics the checkpoint keeps: ema = PyTorch's running averages, exact = "
        "mean/variance recomputed over the whole training set after training, layer by "
        "layer (both are measured and reported) (default: %(default)s)",
    )
    run.add_argument(
        "--exact-inputs",
        choices=EXACT_INPUTS,
        default=_DEFAULTS.exact_inputs,
        help="images trained with --augment-shift: compute the exact statistics over every "
        "training image under every shift (augmented: the distribution the weights were "
        "trained on) or over the training images as they are (plain) (default: %(default)s)",
    )
    run.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="training seed (%(default)s)")
    run.add_argument(
        "--device",
        choices=DEVICES,
        default=_DEFAULTS.device,
        help="auto = CUDA when available, else CPU (default: %(default)s)",
    )
    run.add_argument(
        "--sync-bn",
        action="store_true",
        help="under torchrun: BN statistics over the global batch of all processes",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar or summary line")


def register(subparsers: Any) -> None:
    """Add the ``train`` sub-command."""
    parser = subparsers.add_parser(
        "train",
        help="train a BatchNorm network and write its run folder",
        description=__doc__,
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
        label_smoothing=args.label_smoothing,
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
    tdist.setup(env, device)
    try:
        result = fit(splits, model_config, train_config, env, log=log)
    finally:
        tdist.teardown(env)
    checkpoint = out / "checkpoint.pt"
    if result is not None:
        write_run_folder(out, result, splits, model_config, train_config, env)
        if log:
            log(f"wrote {out}/ (checkpoint.pt, metrics.jsonl, summary.json, plots/)")
    return checkpoint

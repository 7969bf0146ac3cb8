"""Options of ``python -m training train`` (shared with ``all``) and their defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.config import DEVICES, EXACT_INPUTS, OPTIMIZERS, SCHEDULES, STATS_MODES, TrainConfig
from training.datasets import BUILTIN

DESCRIPTION = """\
Train a BatchNorm network (CNN for images, MLP for tabular data) and write the
run folder --out: checkpoint.pt, metrics.jsonl (one JSON object per epoch),
summary.json (validation and test accuracy under both EMA and exact BN
statistics) and plots/*.png (learning curves; EMA vs exact statistics per BN
layer). Every file is written atomically.

Data parallel: torchrun --nproc_per_node=N -m training train ... [--sync-bn]
(gloo on CPU, nccl on CUDA); only rank 0 writes files."""

# Defaults per model kind, chosen on validation data only (digits CNN; breast_cancer
# MLP; mean of 3 seeds; the test split never took part). Figures: benchmarks/bench_train.py.
DEFAULT_WIDTHS = {"cnn": (32, 64, 128), "mlp": (32,)}
DEFAULT_DROPOUT = {"cnn": 0.0, "mlp": 0.2}
# Digits, 5-fold cross-validation on train+val: 7 errors of 1437 with 0.1, 12 without.
DEFAULT_LABEL_SMOOTHING = {"cnn": 0.1, "mlp": 0.0}
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
        help="cross-entropy label smoothing; it also makes the served probabilities less "
        f"extreme (default: {DEFAULT_LABEL_SMOOTHING['cnn']} for CNN, "
        f"{DEFAULT_LABEL_SMOOTHING['mlp']} for MLP)",
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
    run.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for PyTorch; 0 keeps PyTorch's default (one per core). These "
        "networks are too small to gain from more threads, and on a busy machine extra "
        "threads wait on each other (default: 1)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar or summary line")

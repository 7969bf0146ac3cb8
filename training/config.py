"""The options of a training run, each declared once as a typed field.

``python -m training train`` (and ``all``) builds its command line from these
classes (``training.options``): every field made with ``option(...)`` is one
``--flag`` with its type, default, help, bounds or choices, in the ``--help``
group named by its second argument. The groups:

- ``DataOptions`` (data): the dataset and its split; becomes the ``data_spec``.
- ``ModelConfig`` (model): the architecture; ``kind``, ``in_shape`` and
  ``num_classes`` come from the data.
- ``TrainConfig`` (optimization, run): the optimizer, schedule and BN statistics.
- ``RunOptions``, ``ConsoleOptions`` (run): how this process runs; not stored.

``ModelConfig`` and ``TrainConfig`` are stored in the checkpoint through
``to_dict`` / ``from_dict`` (JSON-friendly values), so their field names are a
file format: add fields with defaults, never rename one.

To add an option, add ONE field to the class it belongs to, e.g. a data option::

    missing: Literal["error", "drop", "mean", "median"] = option(
        "error", DATA, "what to do with missing values: ..."
    )

and use it where it acts: a ``DataOptions`` field reaches ``make_data_spec``
under its own name (``DataOptions.spec_arguments``); a ``TrainConfig`` or
``ModelConfig`` field is read as ``cfg.<name>``. The flag (``--missing``), its
help with the default, its validation and its ``summary.json`` entry follow.
An option that only acts on one model kind says ``applies_to=("cnn",)``; a
default that depends on the kind is ``per_kind={"cnn": ..., "mlp": ...}``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal, get_args

from training.datasets import BUILTIN
from training.errors import UsageError
from training.labels import parse_labels_option
from training.options import check_fields, option, options_class, plain

ModelKind = Literal["cnn", "mlp"]
BNPosition = Literal["before", "after"]
StatsMode = Literal["ema", "exact"]
Optimizer = Literal["sgd", "rmsprop", "adam", "adamw"]
Schedule = Literal["onecycle", "cosine", "constant"]
ExactInputs = Literal["augmented", "plain"]
Device = Literal["auto", "cpu", "cuda"]
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
SCHEDULES: tuple[str, ...] = get_args(Schedule)
STATS_MODES: tuple[str, ...] = get_args(StatsMode)
EXACT_INPUTS: tuple[str, ...] = get_args(ExactInputs)
DEVICES: tuple[str, ...] = get_args(Device)

DATA, MODEL, OPTIMIZATION, RUN = "data", "model", "optimization", "run"

# Defaults per model kind, chosen on validation data only (digits CNN; breast_cancer
# MLP; mean of 3 seeds; the test split never took part). Figures: benchmarks/bench_train.py.
# Label smoothing on digits, 5-fold cross-validation on train+val: 7 errors of 1437 with
# 0.1, 12 without.
DEFAULT_WIDTHS = {"cnn": (32, 64, 128), "mlp": (32,)}
DEFAULT_DROPOUT = {"cnn": 0.0, "mlp": 0.2}
DEFAULT_LABEL_SMOOTHING = {"cnn": 0.1, "mlp": 0.0}


@options_class
class DataOptions:
    """Which samples to train on and how they are split (the checkpoint's ``data_spec``)."""

    dataset: str = option(
        "digits",
        DATA,
        f"built-in dataset ({', '.join(BUILTIN)}), a path to a .csv or .npz file "
        "(.npz: arrays X and y, optional labels and feature_names; X 2-D is tabular, 3-D/4-D "
        "are images), or an image folder DIR/<class>/*.png|jpg",
    )
    label_column: str | None = option(
        None, DATA, "CSV only: the column that holds the class (integer ids or names)"
    )
    labels: str | None = option(
        None,
        DATA,
        "the classes in this order, as a,b,c or a text file with one per line; every sample's "
        "label must be one of them (default: ids in numeric order, names sorted)",
        metavar="A,B,...|FILE",
    )
    features: tuple[str, ...] | None = option(
        None,
        DATA,
        "tabular: the feature columns to use, in this order (default: every column but the "
        "label; a name may hold spaces, not commas)",
        metavar="A,B,...",
    )
    categorical: tuple[str, ...] | None = option(
        None,
        DATA,
        "tabular: columns to read as text categories even when they hold numbers (columns of "
        "text are categorical anyway); each is one-hot encoded with the categories of the "
        "training split",
        metavar="A,B,...",
    )
    missing: Literal["error", "drop", "mean", "median"] = option(
        "error",
        DATA,
        "tabular values that are missing (empty, NA, NaN, nan, null, N/A, ... as pandas reads "
        "them): error names the first one; drop drops those rows; mean/median fill a numeric "
        "feature with its training-split mean/median and a categorical one with its most "
        "frequent training category (the model card keeps the fill, the service applies it to "
        "a null)",
    )
    channels: int | None = option(
        None,
        DATA,
        "image folders: 1 (gray) or 3 (RGB) channels (default: 1 when every file is gray)",
        choices=(1, 3),
    )
    image_size: tuple[int, ...] | None = option(
        None,
        DATA,
        "image folders: resize every file to H,W pixels, bilinear (default: the files' own "
        "size, which must agree)",
        metavar="H,W",
        ge=1,
    )
    val_fraction: float = option(0.2, DATA, "validation share of the samples", gt=0, lt=1)
    test_fraction: float = option(0.2, DATA, "held-out test share of the samples", gt=0, lt=1)
    split_seed: int = option(0, DATA, "seed of the stratified train/validation/test split")
    out: Path | None = option(None, DATA, "run folder to write (default: artifacts/<dataset name>)")

    def validate(self) -> None:
        """Raise ``UsageError`` naming the first bad option."""
        check_fields(self)
        if self.val_fraction + self.test_fraction >= 1:
            raise UsageError(
                f"--val-fraction + --test-fraction must be < 1 (nothing left to train on), "
                f"got {self.val_fraction:g} + {self.test_fraction:g}"
            )
        if self.image_size is not None and len(self.image_size) != 2:
            raise UsageError(f"--image-size takes H,W (two values), got {len(self.image_size)}")
        parse_labels_option(self.labels)

    def spec_arguments(self) -> dict[str, Any]:
        """Keyword arguments of ``training.data.make_data_spec``: every field but ``out``."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values.pop("out")
        values["seed"] = values.pop("split_seed")
        values["labels"] = parse_labels_option(self.labels)
        for name in ("features", "categorical"):
            values[name] = None if values[name] is None else list(values[name])
        if self.image_size is not None:
            values["image_size"] = (self.image_size[0], self.image_size[1])
        return values


@options_class
class ModelConfig:
    """Architecture of an MLP or CNN of (layer) -> BatchNorm -> ReLU blocks.

    ``widths`` are hidden units (MLP) or channels (CNN), one block each.
    ``in_shape`` is one sample's shape: ``(features,)`` or ``(channels, H, W)``.
    ``bn_momentum`` follows PyTorch: running = (1 - momentum) * running + momentum * batch.
    """

    kind: ModelKind = option(
        group=MODEL,
        help="network kind; auto = CNN for images, MLP for tabular data",
        flag="--model",
        auto="auto",
    )
    in_shape: tuple[int, ...]
    num_classes: int
    widths: tuple[int, ...] = option(
        group=MODEL,
        help="comma-separated channels (CNN) or hidden units (MLP), one BN block each",
        metavar="N,N,...",
        ge=1,
        per_kind=DEFAULT_WIDTHS,
    )
    dropout: float = option(
        0.0,
        MODEL,
        "dropout before the classifier (CNN) or after every block (MLP); 0 disables",
        ge=0,
        lt=1,
        per_kind=DEFAULT_DROPOUT,
    )
    bn_momentum: float = option(
        0.1,
        MODEL,
        "BN running-average momentum, PyTorch convention: new = (1-m)*old + m*batch",
        gt=0,
        le=1,
    )
    bn_eps: float = option(1e-5, MODEL, "BN epsilon added to the variance", gt=0)
    bn_position: BNPosition = option(
        "before",
        MODEL,
        "BN before the ReLU (layer->BN->ReLU, layer has no bias) or after it (layer->ReLU->BN)",
    )
    kernel_size: int = option(3, MODEL, "CNN kernel size", cli=False, ge=1)

    def validate(self) -> None:
        """Raise ``UsageError`` if a value is out of range or the input is too small."""
        check_fields(self)
        if self.num_classes < 2:
            raise UsageError(f"need at least 2 classes, got {self.num_classes}")
        if self.kind == "mlp" and len(self.in_shape) != 1:
            raise UsageError(f"an MLP needs 1-D samples, got shape {list(self.in_shape)}")
        if self.kind == "cnn":
            if len(self.in_shape) != 3:
                raise UsageError(f"a CNN needs (C, H, W) samples, got shape {list(self.in_shape)}")
            # Every conv is unpadded (exact folding), so each block shrinks H and W.
            shrink = len(self.widths) * (self.kernel_size - 1)
            if min(self.in_shape[1:]) - shrink < 1:
                raise UsageError(
                    f"images of {self.in_shape[1]}x{self.in_shape[2]} are too small for "
                    f"{len(self.widths)} unpadded {self.kernel_size}x{self.kernel_size} convs; "
                    "use fewer --widths"
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples become lists)."""
        return plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of ``to_dict``; unknown or missing keys are an error."""
        values = _known(cls, data)
        try:
            values["in_shape"] = tuple(int(d) for d in values["in_shape"])
            values["widths"] = tuple(int(w) for w in values["widths"])
        except (TypeError, ValueError):
            raise UsageError("ModelConfig in_shape and widths must be lists of integers") from None
        return cls(**values)


@options_class
class TrainConfig:
    """Options of one training run (see ``python -m training train --help``)."""

    epochs: int = option(60, OPTIMIZATION, "training epochs", ge=1)
    batch_size: int = option(
        64,
        OPTIMIZATION,
        "global batch size, split over torchrun processes; the last partial batch of an "
        "epoch is dropped so BN never sees a 1-sample batch",
        ge=2,
        why="(BatchNorm needs 2+ samples per batch)",
    )
    optimizer: Optimizer = option(
        "adamw", OPTIMIZATION, "sgd = SGD with Nesterov momentum; rmsprop, adam, adamw"
    )
    lr: float = option(3e-3, OPTIMIZATION, "peak learning rate", gt=0)
    weight_decay: float = option(
        1e-4, OPTIMIZATION, "weight decay of conv/linear weights (not BN or biases)", ge=0
    )
    momentum: float = option(0.9, OPTIMIZATION, "momentum of sgd and rmsprop", ge=0, lt=1)
    schedule: Schedule = option(
        "onecycle",
        OPTIMIZATION,
        "per-step learning-rate schedule: onecycle (warm-up then anneal), cosine decay, "
        "or constant",
    )
    label_smoothing: float = option(
        0.0,
        OPTIMIZATION,
        "cross-entropy label smoothing; it also makes the served probabilities less extreme",
        ge=0,
        lt=1,
        per_kind=DEFAULT_LABEL_SMOOTHING,
    )
    augment_shift: int = option(
        1,
        OPTIMIZATION,
        "images only: random translation of up to N pixels per axis while training; 0 disables",
        ge=0,
        applies_to=("cnn",),
    )
    patience: int = option(
        0,
        OPTIMIZATION,
        "early stopping: stop after N epochs without a better validation accuracy "
        "(ties: lower loss) and keep the best epoch's weights; 0 trains all epochs",
        ge=0,
    )
    stats: StatsMode = option(
        "exact",
        RUN,
        "BN statistics the checkpoint keeps: ema = PyTorch's running averages, exact = "
        "mean/variance recomputed over the whole training set after training, layer by "
        "layer (both are measured and reported)",
    )
    exact_inputs: ExactInputs = option(
        "augmented",
        RUN,
        "images trained with --augment-shift: compute the exact statistics over every "
        "training image under every shift (augmented: the distribution the weights were "
        "trained on) or over the training images as they are (plain)",
        applies_to=("cnn",),
    )
    seed: int = option(0, RUN, "training seed (initialization, batch order, augmentation)")
    device: Device = option("auto", RUN, "auto = CUDA when available, else CPU")
    sync_bn: bool = option(
        False,
        RUN,
        "under torchrun: BN statistics over the global batch of all processes "
        "(an error without a multi-process launch)",
    )
    stats_batch_size: int = option(
        512, RUN, "batch size of the exact statistics pass", cli=False, ge=1
    )

    def validate(self) -> None:
        """Raise ``UsageError`` if an option is out of range."""
        check_fields(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of ``to_dict``; unknown keys are an error."""
        return cls(**_known(cls, data))


@options_class
class RunOptions:
    """How this process runs; not part of the model or the checkpoint."""

    threads: int = option(
        1,
        RUN,
        "CPU threads for PyTorch; 0 keeps PyTorch's default (one per core). These "
        "networks are too small to gain from more threads, and on a busy machine extra "
        "threads wait on each other",
        ge=0,
    )


@options_class
class ConsoleOptions:
    """What a command prints."""

    quiet: bool = option(False, RUN, "print nothing but errors (no progress, no tables)")


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    fields = dataclasses.fields(cls)
    names = {f.name for f in fields}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UsageError(f"unknown {cls.__name__} fields: {', '.join(unknown)}")
    required = [f.name for f in fields if f.default is dataclasses.MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise UsageError(f"{cls.__name__} lacks {', '.join(missing)}")
    return dict(data)

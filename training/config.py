"""Configuration of a model and of a training run, as plain dataclasses.

Both round-trip through ``to_dict`` / ``from_dict`` (JSON-friendly values only),
which is how they are stored in the checkpoint. ``validate`` raises
``UsageError`` naming the first bad value, so bad options stop a run before any
work starts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from training.errors import UsageError

ModelKind = Literal["cnn", "mlp"]
BNPosition = Literal["before", "after"]
StatsMode = Literal["ema", "exact"]
OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")
STATS_MODES = ("ema", "exact")
EXACT_INPUTS = ("augmented", "plain")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of an MLP or CNN of (layer) -> BatchNorm -> ReLU blocks.

    ``widths`` are hidden units (MLP) or channels (CNN), one block each.
    ``in_shape`` is one sample's shape: ``(features,)`` or ``(channels, H, W)``.
    ``bn_momentum`` follows PyTorch: running = (1 - momentum) * running + momentum * batch.
    """

    kind: ModelKind
    in_shape: tuple[int, ...]
    num_classes: int
    widths: tuple[int, ...]
    dropout: float = 0.0
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5
    bn_position: BNPosition = "before"
    kernel_size: int = 3

    def validate(self) -> None:
        """Raise ``UsageError`` if a value is out of range or the input is too small."""
        if self.kind not in ("cnn", "mlp"):
            raise UsageError(f"model kind must be 'cnn' or 'mlp', got {self.kind!r}")
        if self.bn_position not in ("before", "after"):
            raise UsageError(f"--bn-position must be 'before' or 'after', got {self.bn_position!r}")
        if not self.widths or any(w < 1 for w in self.widths):
            raise UsageError(f"--widths must be positive integers, got {list(self.widths)}")
        if self.num_classes < 2:
            raise UsageError(f"need at least 2 classes, got {self.num_classes}")
        if not 0.0 <= self.dropout < 1.0:
            raise UsageError(f"--dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.bn_momentum <= 1.0:
            raise UsageError(f"--bn-momentum must be in (0, 1], got {self.bn_momentum}")
        if not (self.bn_eps > 0 and math.isfinite(self.bn_eps)):
            raise UsageError(f"--bn-eps must be positive, got {self.bn_eps}")
        if self.kind == "mlp" and len(self.in_shape) != 1:
            raise UsageError(f"an MLP needs 1-D samples, got shape {list(self.in_shape)}")
        if self.kind == "cnn":
            if len(self.in_shape) != 3:
                raise UsageError(f"a CNN needs (C, H, W) samples, got shape {list(self.in_shape)}")
            if self.kernel_size < 1:
                raise UsageError(f"kernel size must be positive, got {self.kernel_size}")
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
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of ``to_dict``; unknown keys are an error."""
        values = _known(cls, data)
        values["in_shape"] = tuple(int(d) for d in values["in_shape"])
        values["widths"] = tuple(int(w) for w in values["widths"])
        return cls(**values)


@dataclass(frozen=True)
class TrainConfig:
    """Options of one training run (see ``python -m training train --help``)."""

    epochs: int = 60
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 3e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: str = "onecycle"
    label_smoothing: float = 0.0
    augment_shift: int = 1
    patience: int = 0
    stats: str = "exact"
    exact_inputs: str = "augmented"
    seed: int = 0
    device: str = "auto"
    sync_bn: bool = False
    stats_batch_size: int = 512

    def validate(self) -> None:
        """Raise ``UsageError`` if an option is out of range."""
        if self.epochs < 1:
            raise UsageError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            raise UsageError(
                f"--batch-size must be at least 2 (BatchNorm needs 2+ samples per batch), "
                f"got {self.batch_size}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"--schedule must be one of {', '.join(SCHEDULES)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError(f"--lr must be positive, got {self.lr}")
        if not self.weight_decay >= 0:
            raise UsageError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.momentum < 1.0:
            raise UsageError(f"--momentum must be in [0, 1), got {self.momentum}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UsageError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.augment_shift < 0:
            raise UsageError(f"--augment-shift must be >= 0, got {self.augment_shift}")
        if self.patience < 0:
            raise UsageError(f"--patience must be >= 0, got {self.patience}")
        if self.stats not in STATS_MODES:
            raise UsageError(f"--stats must be 'ema' or 'exact', got {self.stats!r}")
        if self.exact_inputs not in EXACT_INPUTS:
            raise UsageError(f"--exact-inputs must be one of {', '.join(EXACT_INPUTS)}")
        if self.device not in DEVICES:
            raise UsageError(f"--device must be one of {', '.join(DEVICES)}")
        if self.stats_batch_size < 1:
            raise UsageError(f"stats batch size must be positive, got {self.stats_batch_size}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of ``to_dict``; unknown keys are an error."""
        return cls(**_known(cls, data))


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UsageError(f"unknown {cls.__name__} fields: {', '.join(unknown)}")
    return dict(data)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value

"""The training loop: single process, or DistributedDataParallel under torchrun.

``fit`` trains a fresh ``build_model(model_config)`` on standardized inputs
and returns the trained network with both kinds of BN statistics measured:
the EMA buffers PyTorch keeps while training, and exact whole-training-set
statistics (``training.stats``). The checkpoint keeps the kind that
``TrainConfig.stats`` names.

Images trained with random shifts get their exact statistics, by default
(``exact_inputs="augmented"``), over every training image under every shift:
the distribution the weights were trained on, enumerated, so still exact and
deterministic. Measured on digits (3 seeds, validation): statistics of the
plain training images give a ~10% higher validation loss than the EMA, the
augmented ones match or beat it. Without augmentation both are the same.

Data parallel runs split every GLOBAL batch of ``batch_size`` samples across
the processes (each gets ``batch_size / world_size``), drawn from the same
seeded permutation and the same augmentation offsets as a single process. With
``--sync-bn`` a 2-process run therefore sees the same batches and the same BN
statistics as the single-process run, and differs only in dropout masks and
float rounding.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from training import distributed as tdist
from training.config import ModelConfig, StatsMode, TrainConfig
from training.console import EpochProgress
from training.data import Splits, Standardization
from training.distributed import DistEnv
from training.errors import UsageError
from training.models import BNNet, build_model
from training.optim import make_optimizer, make_scheduler
from training.stats import bn_buffers, load_bn_buffers, recompute_exact_bn_stats


@dataclass
class FitResult:
    """A trained model (BN buffers per ``stats_mode``) and what was measured on the way."""

    model: BNNet
    standardization: Standardization
    stats_mode: StatsMode
    history: list[dict[str, float]]
    metrics: dict[str, float]
    bn_stats: dict[str, dict[str, tuple[Tensor, Tensor]]] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else CPU; asking for absent CUDA is a ``UsageError``."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_batch_size(n_train: int, cfg: TrainConfig, env: DistEnv) -> None:
    """Refuse batch sizes that BatchNorm or the data cannot support, before training."""
    if n_train < cfg.batch_size:
        raise UsageError(
            f"the training split has {n_train} samples, fewer than --batch-size {cfg.batch_size}"
        )
    if cfg.batch_size % env.world_size or cfg.batch_size // env.world_size < 2:
        raise UsageError(
            f"--batch-size {cfg.batch_size} must split into equal parts of at least 2 samples "
            f"over {env.world_size} processes"
        )


def shift_images(x: Tensor, offsets: Tensor, max_shift: int) -> Tensor:
    """Translate each image (N, C, H, W) by ``offsets[i] - max_shift`` pixels (rows, cols).

    ``offsets`` (N, 2) holds integers in ``[0, 2 * max_shift]``; edges are replicated.
    """
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate").permute(0, 2, 3, 1)  # (N, H', W', C)
    rows = offsets[:, 0, None] + torch.arange(h, device=x.device)  # (N, H)
    cols = offsets[:, 1, None] + torch.arange(w, device=x.device)  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    # Plain NCHW strides: a 1-channel permuted view also passes as channels-last, which
    # would make conv weight gradients channels-last (and DDP warn about its buckets).
    return out.clone(memory_format=torch.contiguous_format)


class AllShifts:
    """Re-iterable batches of every image of ``x`` under every shift of at most ``max_shift``.

    The deterministic version of the training augmentation: its (2s+1)^2 copies
    of the training set are the distribution the weights were trained on.
    """

    def __init__(self, x: Tensor, max_shift: int, batch_size: int) -> None:
        self.x, self.max_shift, self.batch_size = x, max_shift, batch_size

    def __iter__(self) -> Iterator[Tensor]:
        side = 2 * self.max_shift + 1
        for chunk in torch.split(self.x, self.batch_size):
            for row in range(side):
                for col in range(side):
                    offsets = torch.tensor([[row, col]], device=chunk.device).expand(len(chunk), 2)
                    yield shift_images(chunk, offsets, self.max_shift)


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1024) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` in eval mode."""
    model.eval()
    loss, correct = 0.0, 0
    for xb, yb in zip(torch.split(x, batch_size), torch.split(y, batch_size), strict=True):
        logits = model(xb)
        loss += float(F.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(dim=1) == yb).sum())
    return loss / len(y), correct / len(y)


def fit(
    splits: Splits,
    model_config: ModelConfig,
    cfg: TrainConfig,
    env: DistEnv | None = None,
    progress: EpochProgress | None = None,
) -> FitResult | None:
    """Train, then measure EMA and exact statistics; ``None`` on ranks other than 0.

    ``progress`` (rank 0 only) is told about every step and epoch.
    """
    env = env or DistEnv()
    device = tdist.process_device(resolve_device(cfg.device), env)
    check_batch_size(len(splits.train), cfg, env)
    standardization = Standardization.fit(splits.train.X)

    def tensors(split: Any) -> tuple[Tensor, Tensor]:
        x = torch.as_tensor(standardization.apply(split.X), device=device)
        return x, torch.as_tensor(split.y, device=device)

    x_train, y_train = tensors(splits.train)
    x_val, y_val = tensors(splits.val)

    torch.manual_seed(cfg.seed)
    model = build_model(model_config).to(device)
    torch.manual_seed(cfg.seed + 1000 * env.rank)  # different dropout masks per process
    train_net: nn.Module = model
    if env.distributed:
        if cfg.sync_bn:
            tdist.convert_sync_bn(model, device)
        train_net = DistributedDataParallel(
            model,
            device_ids=[device.index or 0] if device.type == "cuda" else None,
            # Synchronized BN buffers are equal on every process; otherwise rank 0's win.
            forward_sync_buffers=not cfg.sync_bn,
        )
    steps = len(y_train) // cfg.batch_size  # drop_last: never a 1-sample BN batch
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, steps)
    augment = cfg.augment_shift if splits.kind == "image" else 0
    generator = torch.Generator().manual_seed(cfg.seed)  # same order on every process

    history: list[dict[str, float]] = []
    best_key, best_epoch, best_state = (-math.inf, -math.inf), 0, None
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        train_net.train()
        perm = torch.randperm(len(y_train), generator=generator)
        offsets = torch.randint(0, 2 * augment + 1, (len(y_train), 2), generator=generator)
        totals = [0.0, 0.0, 0.0]  # loss sum, correct, count
        if progress:
            progress.start_epoch(epoch)
        for step in range(steps):
            batch = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            idx = batch[env.rank :: env.world_size]  # this process's share of the global batch
            xb, yb = x_train[idx.to(device)], y_train[idx.to(device)]
            if augment:
                xb = shift_images(xb, offsets[idx].to(device), augment)
            loss, correct = _step(train_net, xb, yb, optimizer, cfg.label_smoothing)
            scheduler.step()
            totals = [totals[0] + loss * len(yb), totals[1] + correct, totals[2] + len(yb)]
            if progress:
                progress.step(loss, correct, len(yb), float(optimizer.param_groups[0]["lr"]))
        loss_sum, correct_sum, count = tdist.all_reduce_sum(totals, env)
        val_loss, val_acc = evaluate(model, x_val, y_val)
        row = {
            "epoch": float(epoch),
            "train_loss": loss_sum / count,
            "train_acc": correct_sum / count,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": float(optimizer.param_groups[0]["lr"]),
            "time_s": time.perf_counter() - start,
        }
        history.append(row)
        if progress:
            progress.end_epoch(row)
        key = (val_acc, -val_loss)
        if cfg.patience and key > best_key:
            best_key, best_epoch, best_state = key, epoch, copy.deepcopy(model.state_dict())
        stop = bool(cfg.patience) and epoch - best_epoch >= cfg.patience
        if tdist.broadcast_flag(stop, env):
            break
    train_time = time.perf_counter() - start
    if not env.is_main:
        return None

    final = build_model(model_config).to(device)
    final.load_state_dict(best_state if best_state is not None else model.state_dict())
    metrics: dict[str, float] = {
        "train_time_s": train_time,
        "epochs_run": float(len(history)),
        "best_epoch": float(best_epoch or len(history)),
        "world_size": float(env.world_size),
    }
    x_test, y_test = tensors(splits.test)
    named = {"val": (x_val, y_val), "test": (x_test, y_test), "train": (x_train, y_train)}
    exact_inputs: Tensor | AllShifts = x_train
    if augment and cfg.exact_inputs == "augmented":
        exact_inputs = AllShifts(x_train, augment, cfg.stats_batch_size)
    ema, exact = _measure_both_statistics(final, named, exact_inputs, cfg, metrics)
    if cfg.stats == "ema":
        load_bn_buffers(final, ema)
    return FitResult(
        model=final.cpu().eval(),
        standardization=standardization,
        stats_mode="ema" if cfg.stats == "ema" else "exact",
        history=history,
        metrics=metrics,
        bn_stats={"ema": _cpu(ema), "exact": _cpu(exact)},
    )


def _step(
    net: nn.Module, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer, smoothing: float
) -> tuple[float, float]:
    """One optimizer step on a batch; its mean loss and number of correct predictions."""
    logits = net(x)
    loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach()), float((logits.detach().argmax(1) == y).sum())


Buffers = dict[str, tuple[Tensor, Tensor]]


def _measure_both_statistics(
    model: nn.Module,
    named: dict[str, tuple[Tensor, Tensor]],
    exact_inputs: Tensor | AllShifts,
    cfg: TrainConfig,
    metrics: dict[str, float],
) -> tuple[Buffers, Buffers]:
    """Evaluate under the EMA buffers, recompute exact ones, evaluate again.

    Adds ``{split}_{loss,acc}_{ema,exact}`` to ``metrics``; returns both buffer
    sets and leaves the exact ones in ``model``.
    """
    ema = bn_buffers(model)
    for mode in ("ema", "exact"):
        if mode == "exact":
            start = time.perf_counter()
            recompute_exact_bn_stats(model, exact_inputs, batch_size=cfg.stats_batch_size)
            metrics["exact_stats_time_s"] = time.perf_counter() - start
        for split, (x, y) in named.items():
            metrics[f"{split}_loss_{mode}"], metrics[f"{split}_acc_{mode}"] = evaluate(model, x, y)
    return ema, bn_buffers(model)


def _cpu(buffers: Buffers) -> Buffers:
    return {name: (m.cpu(), v.cpu()) for name, (m, v) in buffers.items()}

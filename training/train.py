"""The training loop: single process, or DistributedDataParallel under torchrun.

``fit`` trains a fresh ``build_model(model_config)`` on standardized inputs
and returns the trained network with both kinds of BN statistics measured:
the EMA buffers PyTorch keeps while training, and exact whole-training-set
statistics (``training.stats``). The checkpoint keeps the kind that
``TrainConfig.stats`` names.

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
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from training import distributed as tdist
from training.config import ModelConfig, StatsMode, TrainConfig
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
    return padded[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


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
    show_progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> FitResult | None:
    """Train, then measure EMA and exact statistics; ``None`` on ranks other than 0."""
    env = env or DistEnv()
    device = resolve_device(cfg.device)
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
            broadcast_buffers=not cfg.sync_bn,
        )
    steps = len(y_train) // cfg.batch_size  # drop_last: never a 1-sample BN batch
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, steps)
    augment = cfg.augment_shift if splits.kind == "image" else 0
    generator = torch.Generator().manual_seed(cfg.seed)  # same order on every process
    show = (sys.stderr.isatty() if show_progress is None else show_progress) and env.is_main

    history: list[dict[str, float]] = []
    best_key, best_epoch, best_state = (-math.inf, -math.inf), 0, None
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm = torch.randperm(len(y_train), generator=generator)
        offsets = torch.randint(0, 2 * augment + 1, (len(y_train), 2), generator=generator)
        totals = [0.0, 0.0, 0.0]  # loss sum, correct, count
        bar = tqdm(range(steps), desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=not show)
        for step in bar:
            batch = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            idx = batch[env.rank :: env.world_size]  # this process's share of the global batch
            xb, yb = x_train[idx.to(device)], y_train[idx.to(device)]
            if augment:
                xb = shift_images(xb, offsets[idx].to(device), augment)
            logits = train_net(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            totals[0] += float(loss.detach()) * len(yb)
            totals[1] += float((logits.detach().argmax(1) == yb).sum())
            totals[2] += len(yb)
        loss_sum, correct, count = tdist.all_reduce_sum(totals, env)
        val_loss, val_acc = evaluate(model, x_val, y_val)
        row = {
            "epoch": float(epoch),
            "train_loss": loss_sum / count,
            "train_acc": correct / count,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": float(optimizer.param_groups[0]["lr"]),
            "time_s": time.perf_counter() - start,
        }
        history.append(row)
        if show:
            tqdm.write(
                f"epoch {epoch:3d}  loss {row['train_loss']:.4f}  acc {row['train_acc']:.2%}  "
                f"val_loss {val_loss:.4f}  val_acc {val_acc:.2%}",
                file=sys.stderr,
            )
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
    ema = bn_buffers(final)
    x_test, y_test = tensors(splits.test)
    named = {"val": (x_val, y_val), "test": (x_test, y_test), "train": (x_train, y_train)}

    def measure(mode: str) -> None:
        for split, (x, y) in named.items():
            metrics[f"{split}_loss_{mode}"], metrics[f"{split}_acc_{mode}"] = evaluate(final, x, y)

    measure("ema")
    stats_start = time.perf_counter()
    exact_inputs: Tensor | AllShifts = x_train
    if augment and cfg.exact_inputs == "augmented":
        exact_inputs = AllShifts(x_train, augment, cfg.stats_batch_size)
    recompute_exact_bn_stats(final, exact_inputs, batch_size=cfg.stats_batch_size)
    metrics["exact_stats_time_s"] = time.perf_counter() - stats_start
    exact = bn_buffers(final)
    measure("exact")
    if cfg.stats == "ema":
        load_bn_buffers(final, ema)
    if log:
        m = metrics
        log(
            f"test accuracy: ema {m['test_acc_ema']:.2%}  exact {m['test_acc_exact']:.2%}"
            f"  (val: ema {m['val_acc_ema']:.2%}  exact {m['val_acc_exact']:.2%});"
            f" training {train_time:.1f} s, {len(history)} epochs"
        )
    return FitResult(
        model=final.cpu().eval(),
        standardization=standardization,
        stats_mode="ema" if cfg.stats == "ema" else "exact",
        history=history,
        metrics=metrics,
        bn_stats={"ema": _cpu(ema), "exact": _cpu(exact)},
    )


def _cpu(buffers: dict[str, tuple[Tensor, Tensor]]) -> dict[str, tuple[Tensor, Tensor]]:
    return {name: (m.cpu(), v.cpu()) for name, (m, v) in buffers.items()}

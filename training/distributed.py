"""Data-parallel training across the processes that ``torchrun`` starts.

``torchrun --nproc_per_node=N -m training train ...`` sets ``RANK`` /
``WORLD_SIZE`` / ``LOCAL_RANK``; ``DistEnv.from_environ`` reads them and
``setup`` joins the process group (gloo on CPU, nccl on CUDA).

``--sync-bn`` makes every BN layer normalize with statistics of the GLOBAL
batch. ``torch.nn.SyncBatchNorm`` refuses CPU tensors, so on CPU the layers
are replaced by ``CPUSyncBatchNorm``, which all-reduces per-channel sums
through a differentiable all-reduce: the backward pass then sums the
gradients that flow into the shared statistics from every process, as
SyncBatchNorm does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from training.errors import UsageError


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job: ``rank`` of ``world_size`` (1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether there is more than one process."""
        return self.world_size > 1

    @classmethod
    def from_environ(cls) -> DistEnv:
        """Read torchrun's variables; a plain ``python -m training`` is rank 0 of 1."""
        try:
            return cls(
                rank=int(os.environ.get("RANK", "0")),
                world_size=int(os.environ.get("WORLD_SIZE", "1")),
                local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            )
        except ValueError as exc:
            raise UsageError(f"bad torchrun environment (RANK/WORLD_SIZE): {exc}") from exc


def setup(env: DistEnv, device: torch.device) -> None:
    """Join the default process group (no-op for a single process)."""
    if env.distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def teardown(env: DistEnv, finished: bool = True) -> None:
    """Leave the process group; wait for the others only after a run that ``finished``.

    A process that failed must not wait: the others may be blocked in a
    collective that it will never join, and torchrun stops them once it exits.
    """
    if env.distributed and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def process_device(device: torch.device, env: DistEnv) -> torch.device:
    """This process's own GPU under torchrun (``cuda:LOCAL_RANK``); CPU stays CPU."""
    if device.type != "cuda" or not env.distributed:
        return device
    own = torch.device("cuda", env.local_rank)
    torch.cuda.set_device(own)
    return own


def broadcast_flag(flag: bool, env: DistEnv) -> bool:
    """Rank 0's ``flag`` on every process, so that all of them stop at the same epoch."""
    if not env.distributed:
        return flag
    value = torch.tensor([int(flag)])
    dist.broadcast(value, src=0)
    return bool(value.item())


def all_reduce_sum(values: list[float], env: DistEnv) -> list[float]:
    """Element-wise sum of ``values`` over all processes (float64)."""
    if not env.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, group: Any) -> Tensor:
        ctx.group = group
        out = x.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class CPUSyncBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics span every process (works on CPU with gloo).

    Same parameters and buffers as ``BatchNorm1d/2d``, so state dicts are
    interchangeable. Eval mode is plain BatchNorm.
    """

    def __init__(self, bn: _BatchNorm, group: Any = None) -> None:
        super().__init__(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        # Share the very same tensors, so the wrapped model trains the original's.
        if bn.affine:
            self.weight, self.bias = bn.weight, bn.bias
        if bn.track_running_stats:
            self.running_mean, self.running_var = bn.running_mean, bn.running_var
            self.num_batches_tracked = bn.num_batches_tracked
        self.group = group

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size(self.group) > 1):
            return super().forward(input)
        channels = input.shape[1]
        dims = [0, *range(2, input.dim())]
        x64 = input.to(torch.float64)  # sums of squares lose precision in float32
        count = x64.new_full((1,), input.numel() // channels)
        total = _AllReduceSum.apply(
            torch.cat([x64.sum(dims), (x64 * x64).sum(dims), count]), self.group
        )
        n = total[-1]
        mean = total[:channels] / n
        var = (total[channels : 2 * channels] / n - mean * mean).clamp_min(0.0)
        if self.track_running_stats:
            self._update_running(mean.detach(), var.detach() * n / (n - 1))
        shape = (1, channels) + (1,) * (input.dim() - 2)
        out = (input - mean.to(input.dtype).view(shape)) * torch.rsqrt(
            var.to(input.dtype).view(shape) + self.eps
        )
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out

    @torch.no_grad()
    def _update_running(self, mean: Tensor, unbiased_var: Tensor) -> None:
        assert self.running_mean is not None and self.running_var is not None
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        count = float(self.num_batches_tracked)
        factor = self.momentum if self.momentum is not None else 1.0 / count
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased_var.to(self.running_var.dtype), factor)


def convert_sync_bn(model: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BN layer of ``model`` (in place) by its synchronized version."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # A group of its own keeps these all-reduces from interleaving with DDP's buckets.
    group = dist.new_group(backend="gloo")
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _BatchNorm) and not isinstance(child, CPUSyncBatchNorm):
                setattr(parent, name, CPUSyncBatchNorm(child, group))
    return model

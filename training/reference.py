"""The oracle: the UNFOLDED PyTorch model in eval mode, taking raw input like the export does."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from training.checkpoint import Checkpoint

REFERENCE_BATCH = 256


class Standardize(nn.Module):
    """``(x - mean) / std`` per feature (2-D input) or per channel (image input)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)  # broadcast over the channel axis
        return (x - self.mean.reshape(shape)) / self.std.reshape(shape)


def standardization_tensors(ckpt: Checkpoint) -> tuple[torch.Tensor, torch.Tensor]:
    """The checkpoint's standardization as float32 tensors ``(mean, std)``."""
    std = ckpt.standardization
    return (
        torch.as_tensor(np.asarray(std.mean), dtype=torch.float32),
        torch.as_tensor(np.asarray(std.std), dtype=torch.float32),
    )


def reference_model(ckpt: Checkpoint) -> nn.Module:
    """Standardize + the unfolded network, eval mode: raw input in, logits out."""
    mean, std = standardization_tensors(ckpt)
    return nn.Sequential(Standardize(mean, std), ckpt.build()).eval()


def reference_outputs(
    model: nn.Module, x: np.ndarray, *, batch_size: int = REFERENCE_BATCH
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and softmax probabilities of ``model`` on ``x``, computed in float64.

    In batches of ``batch_size`` (eval mode: the result does not depend on it), so
    the float64 activations of a large model on many images fit in memory.
    """
    model64 = copy.deepcopy(model).double().eval()
    logits, probs = [], []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            chunk = torch.as_tensor(x[start : start + batch_size], dtype=torch.float64)
            out = model64(chunk)
            logits.append(out.numpy())
            probs.append(torch.softmax(out, dim=-1).numpy())
    return np.concatenate(logits), np.concatenate(probs)

"""The oracle: the UNFOLDED PyTorch model in eval mode, taking raw input like the export does."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from training.checkpoint import Checkpoint


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


def reference_outputs(model: nn.Module, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits and softmax probabilities of ``model`` on ``x``, computed in float64."""
    model64 = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        logits = model64(torch.as_tensor(x, dtype=torch.float64))
        probs = torch.softmax(logits, dim=-1)
    return logits.numpy(), probs.numpy()

"""Exact ("precise") BatchNorm statistics over the whole training set.

During training, PyTorch keeps an exponential moving average (EMA) of the
mini-batch statistics, which mixes statistics of *earlier* weights and the
noise of single batches. The course notes' "ideal solution" is to compute
each BN layer's mean and variance over the entire training set with the
final weights. Done layer by layer in forward order (cf. Precise-BN, Wu &
Johnson 2021): layer ``l`` is measured on inputs produced by layers ``< l``
that already use their exact statistics, which is exactly the network the
service will run. Everything runs in eval mode, so dropout is off; the
caller chooses the inputs (``training.train`` passes the training set, or
every shift of it when the model was trained with shifted images).

The stored variance is the UNBIASED estimate (divide by n - 1), the same
convention as PyTorch's ``running_var`` (which averages unbiased batch
variances), so the ``ema`` and ``exact`` buffers mean the same thing. With
n = samples x spatial positions in the thousands, the difference from the
biased estimate is below 0.1%.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from training.models import batch_norm_layers

Batches = Tensor | Iterable[Tensor] | Iterable[tuple[Tensor, ...]]


def channel_moments(x: Tensor) -> tuple[Tensor, Tensor, int]:
    """Per-channel ``(mean, M2, count)`` of ``x`` (N, C, ...), in float64.

    ``M2`` is the sum of squared deviations from the mean; channels are axis 1.
    """
    x64 = x.detach().to(torch.float64).transpose(0, 1).reshape(x.shape[1], -1)
    count = x64.shape[1]
    mean = x64.mean(dim=1)
    m2 = ((x64 - mean[:, None]) ** 2).sum(dim=1)
    return mean, m2, count


def merge_moments(
    a: tuple[Tensor, Tensor, int], b: tuple[Tensor, Tensor, int]
) -> tuple[Tensor, Tensor, int]:
    """Combine two ``(mean, M2, count)`` summaries (Chan et al.'s parallel update)."""
    mean_a, m2_a, n_a = a
    mean_b, m2_b, n_b = b
    n = n_a + n_b
    delta = mean_b - mean_a
    mean = mean_a + delta * (n_b / n)
    m2 = m2_a + m2_b + delta**2 * (n_a * n_b / n)
    return mean, m2, n


@torch.no_grad()
def recompute_exact_bn_stats(
    model: nn.Module, data: Batches, batch_size: int = 512
) -> dict[str, tuple[Tensor, Tensor]]:
    """Overwrite every BN layer's running mean/var with exact training-set statistics.

    ``data``: the standardized, un-augmented training inputs, either one tensor
    (split into ``batch_size`` chunks) or a RE-ITERABLE of tensors / ``(x, ...)``
    tuples (a list, a DataLoader: it is traversed once per BN layer). The model
    is left in eval mode. Returns ``{bn_name: (mean, unbiased_var)}`` (float64).
    """
    batches = list(torch.split(data, batch_size)) if isinstance(data, Tensor) else data
    layers = batch_norm_layers(model)
    model.eval()
    device = next(model.parameters()).device
    result: dict[str, tuple[Tensor, Tensor]] = {}
    for name, bn in layers:
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError(f"{name}: track_running_stats=False has no statistics to recompute")
        parts = _layer_input_moments(model, bn, batches, device)
        if not parts:
            raise ValueError("no training data to compute BatchNorm statistics from")
        mean, m2, count = parts[0]
        for part in parts[1:]:
            mean, m2, count = merge_moments((mean, m2, count), part)
        if count < 2:
            raise ValueError(f"{name}: need at least 2 values per channel, got {count}")
        var = m2 / (count - 1)
        bn.running_mean.copy_(mean.to(bn.running_mean.dtype))
        bn.running_var.copy_(var.to(bn.running_var.dtype))
        result[name] = (mean, var)
    return result


def _layer_input_moments(
    model: nn.Module, layer: nn.Module, batches: Batches, device: torch.device
) -> list[tuple[Tensor, Tensor, int]]:
    """Per-batch moments of what ``layer`` receives while ``model`` runs ``batches``."""
    parts: list[tuple[Tensor, Tensor, int]] = []

    def hook(_module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        parts.append(channel_moments(inputs[0]))

    handle = layer.register_forward_pre_hook(hook)
    try:
        for item in batches:
            x = item[0] if isinstance(item, tuple | list) else item
            model(x.to(device))
    finally:
        handle.remove()
    return parts


def bn_buffers(model: nn.Module) -> dict[str, tuple[Tensor, Tensor]]:
    """A copy of every BN layer's ``(running_mean, running_var)``."""
    out = {}
    for name, bn in batch_norm_layers(model):
        assert bn.running_mean is not None and bn.running_var is not None
        out[name] = (bn.running_mean.detach().clone(), bn.running_var.detach().clone())
    return out


@torch.no_grad()
def load_bn_buffers(model: nn.Module, buffers: dict[str, tuple[Tensor, Tensor]]) -> None:
    """Set every BN layer's running mean/var from ``buffers`` (as from ``bn_buffers``)."""
    for name, bn in batch_norm_layers(model):
        assert bn.running_mean is not None and bn.running_var is not None
        mean, var = buffers[name]
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)

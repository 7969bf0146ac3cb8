"""Fold the recorded input standardization into the first layer, so a model takes raw input.

Standardization is ``x' = (x - mean) / std`` per feature (tabular) or per channel (images).
For a layer ``y = W x' + b`` it folds exactly into ``W' = W / std`` and
``b' = b - W' · mean`` (summed over every input element the output reads). For a
convolution this is exact only when every kernel tap reads real input, i.e. padding 0:
a zero pad in standardized space is ``mean`` in raw space, which ``W'`` cannot see.
"""

from __future__ import annotations

import torch
from torch import nn

from training.errors import UsageError
from training.folding.math import F64, fold_forward


def standardization_fold(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    mean: torch.Tensor,
    std: torch.Tensor,
    groups: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(W', b')`` in float64 for a Linear (2-D weight) or Conv (N-D weight) layer.

    Standardization is the per-channel affine map ``x / std - mean / std``, so this
    is the folding engine's forward fold with ``s = 1/std`` and ``t = -mean/std``.
    """
    w = weight.detach().to(F64)
    if mean.numel() != w.shape[1] * groups:
        raise ValueError(
            f"standardization has {mean.numel()} entries, the layer reads "
            f"{w.shape[1] * groups} input channels"
        )
    inv_std = 1.0 / std.detach().to(F64)
    b = None if bias is None else bias.detach().to(F64)
    return fold_forward(w, b, inv_std, -mean.detach().to(F64) * inv_std, groups=groups)


def fold_standardization_into(layer: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Fold the standardization into ``layer`` in place (a Linear or a padding-0 Conv)."""
    if isinstance(layer, nn.Linear):
        groups = 1
    elif isinstance(layer, nn.modules.conv._ConvNd) and not layer.transposed:
        if any(p != 0 for p in _padding(layer)):
            raise UsageError(
                f"cannot fold input standardization into {type(layer).__name__} with padding "
                f"{layer.padding}: the first convolution must use padding 0"
            )
        groups = layer.groups
    else:
        raise UsageError(
            f"cannot fold input standardization into {type(layer).__name__}: "
            "the first layer must be Linear or Conv"
        )
    weight: torch.Tensor = layer.weight
    bias: torch.Tensor | None = layer.bias
    w_new, b_new = standardization_fold(weight, bias, mean, std, groups)
    with torch.no_grad():
        weight.copy_(w_new.to(weight.dtype))
    if bias is None:
        layer.bias = nn.Parameter(b_new.to(weight.dtype))
    else:
        with torch.no_grad():
            bias.copy_(b_new.to(bias.dtype))


def _padding(layer: nn.modules.conv._ConvNd) -> tuple[int, ...]:
    if isinstance(layer.padding, str):
        # 'valid' is padding 0; 'same' pads unless the kernel is 1.
        if layer.padding == "valid":
            return (0,)
        return tuple(k - 1 for k in layer.kernel_size)
    return tuple(layer.padding)

"""Fold the recorded input standardization into the first layer, so a model takes raw input.

``raw_input_model`` is what the export uses: the ``1/std`` scale folded into the
first layer, the ``mean`` subtracted by a ``Center`` in front of it. Folding the
mean too (``fold_standardization_into`` with the mean) turns it into a bias that
float32 must cancel against ``W' x`` at run time: a feature such as a year (mean
2008, std 0.8) then costs ~1e-4 in the first layer's output. Measured on the
Palmer penguins CSV (its ``year`` column): max |Δprobability| vs the float64
oracle 1.1e-5 with the mean folded, 1.3e-7 with it subtracted in the graph, where
``x - mean`` is exact in float32 for ``x`` near ``mean`` (Sterbenz).

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


class CenteredInput(nn.Module):
    """``net(x - mean)``, mean per feature (2-D input) or per channel (image input).

    ``net``'s submodules are registered here under their own names, so the fold
    report, the card and the drift monitor name layers as the checkpoint does
    (``layers.1``, not ``1.layers.1``).
    """

    input_mean: torch.Tensor

    def __init__(self, net: nn.Module, mean: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("input_mean", mean.detach().clone())
        for name, child in net.named_children():
            self.add_module(name, child)
        self._net_forward = net.forward  # net's children are the modules registered above

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)  # broadcast over the channel axis
        return self._net_forward(x - self.input_mean.reshape(shape))


def raw_input_model(
    net: nn.Module, layer: nn.Module, mean: torch.Tensor, std: torch.Tensor
) -> nn.Module:
    """``net`` taking raw input: ``1/std`` folded into ``layer`` (in place), ``mean``
    subtracted in front (see the module docstring for why it is not folded)."""
    fold_standardization_into(layer, torch.zeros_like(mean), std)
    return CenteredInput(net, mean)


def _padding(layer: nn.modules.conv._ConvNd) -> tuple[int, ...]:
    if isinstance(layer.padding, str):
        # 'valid' is padding 0; 'same' pads unless the kernel is 1.
        if layer.padding == "valid":
            return (0,)
        return tuple(k - 1 for k in layer.kernel_size)
    return tuple(layer.padding)

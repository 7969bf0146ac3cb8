"""Pure fold arithmetic: every function takes and returns float64 tensors.

Notation, per BN channel c: ``s_c = γ_c / sqrt(σ²_c + ε)`` and ``t_c = β_c - μ_c·s_c``,
so that ``BN(y) = s ⊙ y + t``. A *channel map* ``m`` says which BN channel each
feature of the layer corresponds to (``arange(C)`` in the common case; something
else when a Flatten or a Reshape sits between the BN and the layer).

Weight layouts (PyTorch):
- Linear ``[out, in]``; Conv ``[C_out, C_in/g, k...]``; ConvTranspose ``[C_in, C_out/g, k...]``.
The grouped ConvTranspose case is where other tools go wrong: its output channel
of weight entry ``[i, j]`` is ``(i // (C_in/g)) * (C_out/g) + j``, not ``i`` nor ``j``.

The caller casts the layer's parameters to float64 once, calls these functions,
checks the result fits the layer's dtype (``fits_dtype``) and casts back once.
"""

from __future__ import annotations

import torch
from torch import Tensor

F64 = torch.float64


def bn_affine(
    running_mean: Tensor,
    running_var: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    eps: float,
) -> tuple[Tensor, Tensor]:
    """``(s, t)`` with ``BN(y) = s·y + t`` in float64; ``affine=False`` means γ=1, β=0."""
    mean = running_mean.detach().to(F64)
    var = running_var.detach().to(F64)
    gamma = torch.ones_like(mean) if weight is None else weight.detach().to(F64)
    beta = torch.zeros_like(mean) if bias is None else bias.detach().to(F64)
    scale = gamma / torch.sqrt(var + eps)
    return scale, beta - mean * scale


def output_channel_of_weight(weight_shape: torch.Size, groups: int, transposed: bool) -> Tensor:
    """For a Conv/ConvTranspose/Linear weight: the output channel of each ``[dim0, dim1]`` slot.

    Returns an int64 tensor of shape ``weight_shape[:2]``.
    """
    d0, d1 = weight_shape[0], weight_shape[1]
    if not transposed:
        return torch.arange(d0).unsqueeze(1).expand(d0, d1)
    # [C_in, C_out/g]: input channel i belongs to group i // (C_in/g).
    group = torch.arange(d0) // (d0 // groups)
    return group.unsqueeze(1) * d1 + torch.arange(d1).unsqueeze(0)


def input_channel_of_weight(weight_shape: torch.Size, groups: int, transposed: bool) -> Tensor:
    """For a Conv/ConvTranspose/Linear weight: the input channel of each ``[dim0, dim1]`` slot."""
    d0, d1 = weight_shape[0], weight_shape[1]
    if transposed:
        return torch.arange(d0).unsqueeze(1).expand(d0, d1)
    # [C_out, C_in/g]: output channel o belongs to group o // (C_out/g).
    group = torch.arange(d0) // (d0 // groups)
    return group.unsqueeze(1) * d1 + torch.arange(d1).unsqueeze(0)


def _per_slot(values: Tensor, slots: Tensor, ndim: int) -> Tensor:
    """``values[slots]`` shaped to broadcast against a weight with ``ndim`` dimensions."""
    picked = values[slots]
    return picked.reshape(*picked.shape, *([1] * (ndim - 2)))


def fold_backward(
    weight: Tensor,
    bias: Tensor | None,
    scale: Tensor,
    shift: Tensor,
    *,
    groups: int = 1,
    transposed: bool = False,
) -> tuple[Tensor, Tensor]:
    """Fold ``BN(layer(x))`` into the layer: ``W' = W·s[out(W)]``, ``b' = b·s + t``.

    ``scale``/``shift`` are already indexed per *output feature of the layer* (the
    caller applies the channel map). Works for Linear (``groups=1``), Conv and
    ConvTranspose with any groups.
    """
    if transposed:
        out_ch = output_channel_of_weight(weight.shape, groups, transposed)
        factor = _per_slot(scale, out_ch, weight.dim())
    else:  # dim 0 is the output channel: no gather needed
        factor = scale.reshape(-1, *([1] * (weight.dim() - 1)))
    new_weight = weight * factor
    base = torch.zeros_like(scale) if bias is None else bias
    return new_weight, base * scale + shift


def fold_forward(
    weight: Tensor,
    bias: Tensor | None,
    scale: Tensor,
    shift: Tensor,
    *,
    groups: int = 1,
    transposed: bool = False,
) -> tuple[Tensor, Tensor]:
    """Fold ``layer(BN(x))`` into the layer: ``W' = W·s[in(W)]``, ``b' = b + Σ W·t[in(W)]``.

    ``scale``/``shift`` are indexed per *input feature of the layer*. The shift
    term is a constant per output channel only when every kernel tap reads real
    (or reflect/replicate/circular padded) input: the caller checks that.
    """
    in_ch = input_channel_of_weight(weight.shape, groups, transposed)
    new_weight = weight * _per_slot(scale, in_ch, weight.dim())
    # Σ over kernel taps and the in-group input channels of W[..]·t[in]:
    contrib = weight * _per_slot(shift, in_ch, weight.dim())
    if contrib.dim() > 2:
        contrib = contrib.flatten(2).sum(2)
    if transposed:
        out_ch = output_channel_of_weight(weight.shape, groups, transposed)
        n_out = weight.shape[1] * groups
        extra = torch.zeros(n_out, dtype=weight.dtype).index_add_(
            0, out_ch.reshape(-1), contrib.reshape(-1)
        )
    else:
        extra = contrib.sum(1)
    base = torch.zeros_like(extra) if bias is None else bias
    return new_weight, base + extra


def max_abs(tensor: Tensor) -> float:
    """``max |tensor|`` (NaN if any value is NaN, 0 for an empty tensor)."""
    if not tensor.numel():
        return 0.0
    return float(torch.linalg.vector_norm(tensor, float("inf")))


def fits_dtype(peak: float, dtype: torch.dtype) -> bool:
    """Whether values with ``max |value| == peak`` are finite and fit ``dtype``."""
    return dtype.is_floating_point and peak <= torch.finfo(dtype).max  # False for NaN/inf


def relative_error(actual: Tensor, reference: Tensor) -> float:
    """``max|actual - reference| / max|reference|`` in float64 (0 for an all-zero reference)."""
    if not reference.numel():
        return 0.0
    # Type promotion computes the difference in float64 without a separate cast copy.
    diff = max_abs(
        torch.sub(actual, reference) if reference.dtype == F64 else actual.to(F64) - reference
    )
    scale = max_abs(reference)
    if diff != diff:  # NaN: a fold that produced NaN is as wrong as it gets.
        return float("inf")
    return diff / scale if scale > 0 else diff

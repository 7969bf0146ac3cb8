"""Shared helpers for the folding tests: BN statistics, comparisons, architectures."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.folding import REASONS, FoldResult, fold_batchnorm

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def randomise_bn(
    model: nn.Module, seed: int = 0, *, log_var: tuple[float, float] = (-2, 1)
) -> nn.Module:
    """Trained-looking statistics: var spread over orders of magnitude, some γ < 0 and γ = 0."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen))
                lo, hi = log_var
                m.running_var.copy_(10 ** (lo + (hi - lo) * torch.rand(n, generator=gen)))
                if m.affine:
                    gamma = torch.randn(n, generator=gen)
                    gamma[torch.rand(n, generator=gen) < 0.1] = 0.0
                    m.weight.copy_(gamma)
                    m.bias.copy_(torch.randn(n, generator=gen))
    return model


def rel_error(a: Tensor, b: Tensor) -> float:
    """max |a - b| / max |b|."""
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30))


def fold_and_check(
    model: nn.Module, x: Tensor | tuple[Tensor, ...], tol: float = 1e-5
) -> FoldResult:
    """Fold, then assert the folded model equals the original and BNs left == refused."""
    model.eval()
    inputs = (x,) if isinstance(x, Tensor) else x
    result = fold_batchnorm(model, x)
    with torch.no_grad():
        ref, out = model(*inputs), result.model(*inputs)
    err = rel_error(out, ref)
    assert err <= tol, f"folded model differs: {err:.3g}\n{result.report.render()}"
    assert result.bn_left == result.report.refused
    assert result.report.model_relative_error <= tol
    return result


def count_bn_modules(model: nn.Module) -> int:
    """BatchNorm modules registered in ``model``."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def codes(result: FoldResult) -> dict[str, str | None]:
    """``entry name -> reason_code`` (None when folded); every code must be documented."""
    found = {
        e.name: e.reason_code if e.status == "refused" else None for e in result.report.entries
    }
    assert {c for c in found.values() if c} <= set(REASONS)
    return found

"""What a folded BatchNorm says about the tensor it normalised: its expected moments.

A BN's statistics describe the training distribution of its input, so folding
them away need not lose them. Per channel c, with running mean μ, variance σ²,
scale γ (1 without affine), shift β (0 without affine) and ε:

- folded *backward*, the producing layer now outputs the BN's output, whose mean
  over the training distribution is β and whose variance is γ²σ²/(σ²+ε) (exactly
  so with ``exact`` statistics; over N×H×W positions for a conv);
- folded *forward*, the tensor entering the folded layer is the BN's input, with
  mean μ and variance σ².

``floor`` is ε carried into the tensor's units (γ²ε/(σ²+ε) backward, ε forward):
the BN itself never divided by less than σ²+ε, and with the floor added the
backward reference variance is exactly γ². The monitored tensor is the BN's
input node in the traced graph, which every fold keeps: backward it now carries
the BN's output, forward it is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from training.folding.math import F64
from training.folding.plan import BatchNormSite


@dataclass(frozen=True)
class ExpectedMoments:
    """Per-channel moments (float64) of one tensor of the folded graph, channels on axis 1."""

    name: str  # the fold report entry's name (the BN)
    node: str  # the torch.fx node of the folded graph that holds the tensor
    direction: Literal["backward", "forward"]
    mean: Tensor
    var: Tensor
    floor: Tensor


def expected_moments(
    name: str, site: BatchNormSite, direction: Literal["backward", "forward"]
) -> ExpectedMoments:
    """The moments that ``site``'s statistics promise for the tensor the monitor watches."""
    mean = site.running_mean.detach().to(F64)
    var = site.running_var.detach().to(F64).clamp(min=0)
    if direction == "forward":
        return ExpectedMoments(
            name, site.input.name, direction, mean, var, torch.full_like(var, site.eps)
        )
    gamma = torch.ones_like(mean) if site.weight is None else site.weight.detach().to(F64)
    beta = torch.zeros_like(mean) if site.bias is None else site.bias.detach().to(F64)
    shrink = gamma**2 / (var + site.eps)
    return ExpectedMoments(name, site.input.name, direction, beta, shrink * var, shrink * site.eps)

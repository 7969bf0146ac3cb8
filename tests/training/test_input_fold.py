"""The standardization fold against the oracle: standardize, then the original layer (float64)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from training.errors import UsageError
from training.input_fold import fold_standardization_into
from training.reference import Standardize


def _check(layer: nn.Module, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> None:
    layer, mean, std = layer.double(), mean.double(), std.double()
    oracle = nn.Sequential(Standardize(mean, std), copy.deepcopy(layer)).eval()
    folded = copy.deepcopy(layer)
    fold_standardization_into(folded, mean, std)
    with torch.no_grad():
        want = oracle(x.double())
        got = folded(x.double())
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("bias", [True, False])
def test_linear(bias: bool) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(5, 3, bias=bias)
    mean, std = torch.randn(5) * 10, torch.rand(5) * 100 + 1e-3
    _check(layer, torch.randn(7, 5) * 50, mean, std)


@pytest.mark.parametrize(("cin", "cout", "groups"), [(1, 8, 1), (3, 6, 1), (4, 8, 2), (4, 4, 4)])
def test_conv_padding_zero(cin: int, cout: int, groups: int) -> None:
    torch.manual_seed(1)
    layer = nn.Conv2d(cin, cout, 3, stride=2, dilation=1, groups=groups, bias=False)
    mean, std = torch.randn(cin) * 3, torch.rand(cin) + 0.1
    _check(layer, torch.randn(2, cin, 9, 9) * 4 + 2, mean, std)


def test_conv1d() -> None:
    layer = nn.Conv1d(2, 4, 3, padding="valid")
    _check(layer, torch.randn(3, 2, 10), torch.tensor([1.0, -2.0]), torch.tensor([0.5, 3.0]))


def test_zero_padded_conv_is_refused() -> None:
    # Proof the rule is needed: a zero pad in standardized space is `mean` in raw space.
    layer = nn.Conv2d(1, 2, 3, padding=1)
    with pytest.raises(UsageError, match="padding 0"):
        fold_standardization_into(copy.deepcopy(layer), torch.tensor([5.0]), torch.tensor([2.0]))


def test_other_layers_are_refused() -> None:
    with pytest.raises(UsageError, match="Linear or Conv"):
        fold_standardization_into(nn.ReLU(), torch.zeros(1), torch.ones(1))

"""Input standardization in front of any module: folded where exact, else explicit; always exact."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from own_nets import randomise
from torch import nn

from training.input_affine import standardize_input

MEAN = np.array([0.4, 0.5, 0.6], dtype=np.float32)
STD = np.array([0.2, 0.25, 0.3], dtype=np.float32)


class Skip(nn.Module):
    """The raw input is read twice (a conv and a residual): no single layer to fold into."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x) + x)


class Tied(nn.Module):
    """The first conv is called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(torch.relu(self.conv(x))))


def net(padding: int, mode: str = "zeros") -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=padding, padding_mode=mode, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * (6 + 2 * padding) ** 2, 2),
    )


CASES = [
    ("padding 0", lambda: net(0), "0"),
    ("reflect padding", lambda: net(1, "reflect"), "0"),
    ("circular padding", lambda: net(1, "circular"), "0"),
    ("zero padding", lambda: net(1), None),
    ("input read twice", Skip, None),
    ("conv called twice", Tied, None),
]


@pytest.mark.parametrize(("case", "build", "folded_into"), CASES, ids=[c[0] for c in CASES])
def test_standardized_module_equals_the_float64_oracle(
    case: str, build: object, folded_into: str | None
) -> None:
    torch.manual_seed(0)
    model = randomise(build())  # type: ignore[operator]
    x = torch.rand(16, 3, 8, 8)
    gm, placement = standardize_input(copy.deepcopy(model), MEAN, STD, x)
    assert placement.folded_into == folded_into
    assert bool(placement.reason) == (folded_into is None)
    with torch.no_grad():
        got = gm(x).double()
        z = (x.double() - torch.from_numpy(MEAN).double().view(1, 3, 1, 1)) / torch.from_numpy(
            STD
        ).double().view(1, 3, 1, 1)
        want = copy.deepcopy(model).double()(z)
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()
    calls = {str(n.target) for n in gm.graph.nodes if n.op == "call_module"}
    assert ("input_standardization" in calls) == (folded_into is None)


def test_placement_says_where_it_went() -> None:
    torch.manual_seed(0)
    x = torch.rand(4, 3, 8, 8)
    _, folded = standardize_input(randomise(net(0)), MEAN, STD, x)
    _, kept = standardize_input(randomise(net(1)), MEAN, STD, x)
    assert folded.describe().endswith("folded into 0")
    assert "mean [0.4, 0.5, 0.6]" in folded.describe()
    assert "explicit per-channel affine" in kept.describe() and "zero-pads" in kept.describe()

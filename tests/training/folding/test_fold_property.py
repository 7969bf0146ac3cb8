"""Property tests: random layers, shapes, groups, strides, paddings and BN statistics.

Each example builds  [BN ->] layer1 -> (BN | ReLU -> BN) -> [ReLU ->] [layer2]
and checks: the folded model equals the original (max|diff|/max|ref| <= 1e-5 in
float32), the BNs left in the graph are exactly the refused ones, every folded
entry's error is within its tolerance, and the folds we know to be exact happen.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from fold_helpers import fold_and_check
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
CONVT = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
BN = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


@dataclass
class Case:
    model: nn.Module
    x: torch.Tensor
    post_bn: str  # name of the BN after layer1
    expect_backward: bool  # layer1 -> BN directly: must fold backward
    expect_forward: bool  # input BN into a layer1 that reads only real input


@st.composite
def bn_stats(draw: st.DrawFn, bn: nn.modules.batchnorm._BatchNorm) -> None:
    n = bn.num_features
    floats = st.floats(-3, 3, allow_nan=False)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor(draw(st.lists(floats, min_size=n, max_size=n))))
        # Variance over ten orders of magnitude, down to below eps (near-zero channels).
        logs = draw(st.lists(st.floats(-7, 3), min_size=n, max_size=n))
        bn.running_var.copy_(10 ** torch.tensor(logs))
        if bn.affine:
            gamma = st.one_of(st.just(0.0), st.floats(-2, 2, allow_nan=False))
            bn.weight.copy_(torch.tensor(draw(st.lists(gamma, min_size=n, max_size=n))))
            bn.bias.copy_(torch.tensor(draw(st.lists(floats, min_size=n, max_size=n))))


def make_bn(draw: st.DrawFn, dims: int, channels: int) -> nn.Module:
    bn = BN[dims](
        channels, affine=draw(st.booleans()), eps=draw(st.sampled_from([1e-5, 1e-3]))
    ).eval()
    draw(bn_stats(bn))
    return bn


@st.composite
def cases(draw: st.DrawFn) -> Case:
    dims = draw(st.sampled_from([0, 1, 2, 3]))  # 0: Linear on (N, C)
    groups = draw(st.sampled_from([1, 2, 3]))
    cin = groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 3))
    if draw(st.booleans()) and dims:  # depthwise
        groups, cout = cin, cin * draw(st.integers(1, 2))
    size = {0: 0, 1: 9, 2: 7, 3: 5}[dims]
    kind = "linear" if dims == 0 else draw(st.sampled_from(["conv", "convt"]))
    layer: nn.Module
    forward_exact = True
    if kind == "linear":
        layer = nn.Linear(cin, cout, bias=draw(st.booleans()))
        x = torch.randn(draw(st.integers(1, 4)), cin)
    else:
        k = draw(st.integers(1, 3))
        stride = draw(st.integers(1, 2))
        dilation = draw(st.integers(1, 2))
        bias = draw(st.booleans())
        if kind == "conv":
            padding = draw(st.integers(0, 2))
            mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
            if mode == "reflect":
                padding = min(padding, size - 1)
            layer = CONV[dims](cin, cout, k, stride, padding, dilation, groups, bias, mode)
            forward_exact = padding == 0 or mode != "zeros"
        else:
            padding = draw(st.integers(0, 2))
            out_pad = draw(st.integers(0, max(stride, dilation) - 1))
            layer = CONVT[dims](cin, cout, k, stride, padding, out_pad, groups, bias, dilation)
            forward_exact = stride == 1 and padding >= dilation * (k - 1) + out_pad
        x = torch.randn(draw(st.integers(1, 3)), cin, *([size] * dims))
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p))
    blocks: list[nn.Module] = []
    pre_bn = draw(st.booleans())
    if pre_bn:
        blocks.append(make_bn(draw, dims, cin))
    blocks.append(layer)
    relu_first = draw(st.booleans())
    post_bn = str(len(blocks) + relu_first)
    blocks += [nn.ReLU(), make_bn(draw, dims, cout)] if relu_first else [make_bn(draw, dims, cout)]
    if draw(st.booleans()):  # a consumer for a forward fold
        if draw(st.booleans()):
            blocks.append(nn.ReLU())
        if kind == "linear":
            blocks.append(nn.Linear(cout, 3))
        else:
            blocks.append(CONV[dims](cout, 2, 1))
    model = nn.Sequential(*blocks).eval()
    return Case(model, x, post_bn, not relu_first, pre_bn and forward_exact)


@SETTINGS
@given(cases())
def test_folded_equals_original_and_refusals_are_the_bns_left(case: Case) -> None:
    result = fold_and_check(case.model, case.x)
    entries = {e.name: e for e in result.report.entries}
    for entry in entries.values():
        if entry.status == "folded":
            assert entry.error is not None and entry.tolerance is not None
            assert entry.error <= entry.tolerance
    post = entries[case.post_bn]
    if case.expect_backward:
        assert post.status == "folded" and post.direction == "backward", result.report.render()
    if case.expect_forward:
        assert entries["0"].status == "folded" and entries["0"].direction == "forward"


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    groups=st.sampled_from([1, 2, 4]),
    per_in=st.integers(1, 3),
    per_out=st.integers(1, 3),
    stride=st.integers(1, 3),
    dims=st.sampled_from([1, 2, 3]),
)
def test_grouped_conv_transpose_backward(
    groups: int, per_in: int, per_out: int, stride: int, dims: int
) -> None:
    """Per-group channel mapping on weight axis 1 (pytorch/pytorch#180995, ultralytics#25364)."""
    cin, cout = groups * per_in, groups * per_out
    torch.manual_seed(0)
    model = nn.Sequential(CONVT[dims](cin, cout, 2, stride, groups=groups), BN[dims](cout)).eval()
    with torch.no_grad():
        model[1].running_mean.normal_()
        model[1].running_var.uniform_(0.01, 4)
        model[1].weight.normal_()
        model[1].bias.normal_()
    result = fold_and_check(model, torch.randn(2, cin, *([4] * dims)))
    assert result.report.folded == 1


class Branches(nn.Module):
    def __init__(self, branches: list[nn.Module], bn: nn.Module) -> None:
        super().__init__()
        self.branches, self.bn = nn.ModuleList(branches), bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(torch.cat([b(x) for b in self.branches], dim=1))


@st.composite
def concat_cases(draw: st.DrawFn) -> tuple[nn.Module, torch.Tensor]:
    cin = 4
    branches: list[nn.Module] = []
    for _ in range(draw(st.integers(2, 3))):
        groups = draw(st.sampled_from([1, 2, 4]))
        cout = groups * draw(st.integers(1, 3))
        bias = draw(st.booleans())
        if draw(st.booleans()):
            branches.append(nn.Conv2d(cin, cout, 3, padding=1, groups=groups, bias=bias))
        else:  # same spatial size: stride 1, padding 1
            branches.append(nn.ConvTranspose2d(cin, cout, 3, padding=1, groups=groups, bias=bias))
    width = sum(b.out_channels for b in branches)  # type: ignore[misc]
    model = Branches(branches, make_bn(draw, 2, width)).eval()
    return model, torch.randn(2, cin, 6, 6)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(concat_cases())
def test_bn_after_concat_of_random_branches_is_split_exactly(
    case: tuple[nn.Module, torch.Tensor],
) -> None:
    model, x = case
    result = fold_and_check(model, x)
    assert result.report.folded == 1 and result.bn_left == 0

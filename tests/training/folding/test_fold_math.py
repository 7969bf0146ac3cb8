"""Fold arithmetic against direct float64 evaluation; channel mapping through reshapes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from fold_helpers import codes, fold_and_check, randomise_bn
from torch import nn

from training.folding import fold_batchnorm
from training.folding.math import (
    bn_affine,
    fits_dtype,
    fold_backward,
    fold_forward,
    max_abs,
    output_channel_of_weight,
    relative_error,
)

F64 = torch.float64


def _stats(n: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    mean = torch.randn(n, generator=gen, dtype=F64)
    var = torch.rand(n, generator=gen, dtype=F64) + 0.1
    gamma = torch.randn(n, generator=gen, dtype=F64)
    beta = torch.randn(n, generator=gen, dtype=F64)
    return mean, var, gamma, beta


def test_bn_affine_matches_batch_norm_and_affine_false() -> None:
    mean, var, gamma, beta = _stats(5)
    x = torch.randn(7, 5, dtype=F64)
    s, t = bn_affine(mean, var, gamma, beta, 1e-3)
    torch.testing.assert_close(x * s + t, F.batch_norm(x, mean, var, gamma, beta, eps=1e-3))
    s, t = bn_affine(mean, var, None, None, 1e-5)  # affine=False: γ=1, β=0 (pytorch#122183)
    torch.testing.assert_close(x * s + t, F.batch_norm(x, mean, var, eps=1e-5))


@pytest.mark.parametrize("groups", [1, 2, 3])
def test_conv_transpose_output_channel_is_per_group(groups: int) -> None:
    # weight [C_in=6, C_out/g=2]: slot [i, j] writes output channel (i // (6/g)) * 2 + j
    out = output_channel_of_weight(torch.Size([6, 2, 3]), groups, transposed=True)
    for i in range(6):
        for j in range(2):
            assert out[i, j] == (i // (6 // groups)) * 2 + j


@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("transposed", [False, True])
def test_backward_and_forward_fold_equal_direct_evaluation(groups: int, transposed: bool) -> None:
    torch.manual_seed(groups)
    cin, cout = 4, 8
    conv_cls = nn.ConvTranspose2d if transposed else nn.Conv2d
    conv = conv_cls(cin, cout, 3, groups=groups, bias=True).double()
    if transposed:  # full overlap, so the forward fold is exact
        conv = nn.ConvTranspose2d(cin, cout, 3, padding=2, groups=groups).double()
    x = torch.randn(2, cin, 7, 7, dtype=F64)
    mean, var, gamma, beta = _stats(cout, 1)
    s, t = bn_affine(mean, var, gamma, beta, 1e-5)
    w, b = fold_backward(conv.weight, conv.bias, s, t, groups=groups, transposed=transposed)
    ref = F.batch_norm(conv(x), mean, var, gamma, beta)
    got = torch.func.functional_call(conv, {"weight": w, "bias": b}, (x,))
    torch.testing.assert_close(got, ref)

    mean, var, gamma, beta = _stats(cin, 2)
    s, t = bn_affine(mean, var, gamma, beta, 1e-5)
    w, b = fold_forward(conv.weight, None, s, t, groups=groups, transposed=transposed)
    ref = torch.func.functional_call(
        conv,
        {"weight": conv.weight, "bias": torch.zeros_like(b)},
        (F.batch_norm(x, mean, var, gamma, beta),),
    )
    got = torch.func.functional_call(conv, {"weight": w, "bias": b}, (x,))
    torch.testing.assert_close(got, ref)


def test_forward_fold_into_linear() -> None:
    linear = nn.Linear(5, 3).double()
    mean, var, gamma, beta = _stats(5)
    s, t = bn_affine(mean, var, gamma, beta, 1e-5)
    w, b = fold_forward(linear.weight, linear.bias, s, t)
    x = torch.randn(4, 5, dtype=F64)
    torch.testing.assert_close(F.linear(x, w, b), linear(F.batch_norm(x, mean, var, gamma, beta)))


def test_range_and_error_helpers() -> None:
    assert fits_dtype(max_abs(torch.tensor([65504.0])), torch.float16)
    assert not fits_dtype(max_abs(torch.tensor([65520.0])), torch.float16)
    assert not fits_dtype(max_abs(torch.tensor([float("nan")])), torch.float32)
    assert fits_dtype(max_abs(torch.tensor([1e30])), torch.bfloat16)
    assert relative_error(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5])) == pytest.approx(0.2)
    assert relative_error(torch.tensor([float("nan")]), torch.tensor([1.0])) == float("inf")


# --- channel mapping through rearrangements (a probe tensor, not a size check) ---------------
class Seq(nn.Module):
    def __init__(self, *steps: object) -> None:
        super().__init__()
        self.mods = nn.ModuleList([s for s in steps if isinstance(s, nn.Module)])
        self.steps = steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mods = iter(self.mods)
        for step in self.steps:
            x = next(mods)(x) if isinstance(step, nn.Module) else step(x)  # type: ignore[operator]
        return x


def test_forward_fold_through_flatten_into_linear() -> None:
    model = randomise_bn(
        nn.Sequential(nn.ReLU(), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    )
    result = fold_and_check(model, torch.randn(5, 3, 4, 4))
    assert result.report.entries[0].direction == "forward"


def test_backward_fold_through_unflatten() -> None:
    model = randomise_bn(
        nn.Sequential(nn.Linear(6, 12), nn.Unflatten(1, (3, 2, 2)), nn.BatchNorm2d(3))
    )
    result = fold_and_check(model, torch.randn(5, 6))
    assert result.report.entries[0].direction == "backward"


def test_linear_on_sequences_then_permute_to_bn1d_folds() -> None:
    """Linear on (N, L, F) -> permute -> BN1d(F): BN's axis IS the Linear's feature axis."""
    model = Seq(nn.Linear(4, 6), lambda v: v.permute(0, 2, 1), nn.BatchNorm1d(6))
    randomise_bn(model)
    result = fold_and_check(model.eval(), torch.randn(3, 6, 4))
    assert result.report.entries[0].direction == "backward"


def test_linear_on_sequences_without_permute_is_refused() -> None:
    model = randomise_bn(nn.Sequential(nn.Linear(6, 6), nn.BatchNorm1d(6)))
    assert codes(fold_and_check(model, torch.randn(3, 6, 6))) == {"1": "axis_mismatch"}


def test_flatten_then_bn1d_after_conv_is_refused() -> None:
    """BN1d over C*H*W features after a conv: one conv channel meets many BN channels."""
    model = randomise_bn(nn.Sequential(nn.Conv2d(2, 3, 1), nn.Flatten(), nn.BatchNorm1d(3 * 2 * 2)))
    assert codes(fold_and_check(model, torch.randn(4, 2, 2, 2))) == {"2": "axis_mismatch"}


def test_forward_through_eval_dropout_and_identity() -> None:
    model = randomise_bn(
        nn.Sequential(
            nn.Linear(3, 4),
            nn.ReLU(),
            nn.BatchNorm1d(4),
            nn.Dropout(0.5),
            nn.Identity(),
            nn.Linear(4, 2),
        )
    )
    result = fold_and_check(model, torch.randn(8, 3))
    assert (
        result.report.entries[0].direction == "forward" and result.report.entries[0].target == "5"
    )


def test_near_zero_variance_and_float16_range_are_flagged() -> None:
    bn = nn.BatchNorm2d(3, eps=1e-5)
    with torch.no_grad():
        bn.running_var.copy_(torch.tensor([1.0, 1e-9, 0.0]))
        bn.weight.fill_(300.0)
    model = nn.Sequential(nn.Conv2d(2, 3, 1), bn).eval()
    with torch.no_grad():
        model[0].weight.fill_(2.0)
    (entry,) = fold_and_check(model, torch.randn(2, 2, 3, 3)).report.entries
    assert entry.status == "folded"
    assert entry.near_zero_variance_channels == [1, 2]
    assert "near_zero_variance" in entry.flags and "exceeds_float16_range" in entry.flags
    assert entry.max_abs_scale == pytest.approx(300 / 1e-5**0.5, rel=1e-6)


def test_float64_model_folds_with_a_float64_tolerance() -> None:
    model = randomise_bn(nn.Sequential(nn.Conv1d(3, 4, 3), nn.BatchNorm1d(4))).double().eval()
    (entry,) = fold_batchnorm(model, torch.randn(2, 3, 9, dtype=F64)).report.entries
    assert entry.status == "folded" and entry.dtype == "float64"
    assert entry.tolerance is not None and entry.tolerance < 1e-13


def test_other_norms_are_listed_as_not_foldable() -> None:
    model = randomise_bn(
        nn.Sequential(
            nn.Conv2d(3, 4, 1),
            nn.GroupNorm(2, 4),
            nn.InstanceNorm2d(4),
            nn.Conv2d(4, 4, 1),
            nn.BatchNorm2d(4),
        )
    )
    report = fold_and_check(model, torch.randn(2, 3, 5, 5)).report
    assert [(n.name, n.kind) for n in report.not_foldable] == [
        ("1", "GroupNorm"),
        ("2", "InstanceNorm2d"),
    ]
    assert (report.bn_total, report.folded) == (1, 1)
    assert "not foldable" in report.render()
    assert report.to_dict()["not_foldable"][0]["kind"] == "GroupNorm"


def test_bfloat16_model_folds_within_its_tolerance() -> None:
    model = (
        randomise_bn(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))).to(torch.bfloat16).eval()
    )
    (entry,) = fold_batchnorm(model, torch.randn(2, 3, 6, 6, dtype=torch.bfloat16)).report.entries
    assert entry.status == "folded" and entry.dtype == "bfloat16"
    assert (
        entry.error is not None and entry.tolerance is not None and entry.error <= entry.tolerance
    )


def test_several_inputs_and_outputs() -> None:
    class TwoInTwoOut(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.bn_a = nn.Linear(3, 4), nn.BatchNorm1d(4)
            self.b, self.bn_b = nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"a": self.bn_a(self.a(x)), "b": self.bn_b(self.b(y))}

    model = randomise_bn(TwoInTwoOut()).eval()
    x, y = torch.randn(4, 3), torch.randn(4, 2, 7)
    result = fold_batchnorm(model, (x, y))
    assert result.report.folded == 2 and result.bn_left == 0
    with torch.no_grad():
        out, ref = result.model(x, y), model(x, y)
    for key in ref:
        torch.testing.assert_close(out[key], ref[key])

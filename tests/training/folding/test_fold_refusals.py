"""One test per refusal rule, each built so that folding anyway gives a wrong model.

Every test (1) checks the BN is refused with the right code and stays in the
model, which still equals the original, and (2) folds "anyway" the way a
size-checking tool would, and shows the result is wrong.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from fold_helpers import codes, fold_and_check, randomise_bn, rel_error
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from training.errors import UsageError
from training.folding import FoldingError, fold_batchnorm


def _bn(n: int, seed: int = 0, cls: type[nn.Module] = nn.BatchNorm2d) -> nn.Module:
    return randomise_bn(cls(n), seed).eval()


def _wrong(naive: nn.Module, model: nn.Module, *x: torch.Tensor) -> float:
    with torch.no_grad():
        return rel_error(naive(*x), model(*x))


class FanOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), _bn(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y  # the conv output is read by BN *and* the add


def test_fan_out_is_refused() -> None:
    model, x = FanOut().eval(), torch.randn(2, 3, 8, 8)
    result = fold_and_check(model, x)
    assert codes(result) == {"bn": "fan_out"}
    naive = copy.deepcopy(model)
    naive.conv, naive.bn = fuse_conv_bn_eval(naive.conv, naive.bn), nn.Identity()
    assert _wrong(naive, model, x) > 0.1


class OutputToo(FanOut):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        y = self.conv(x)
        return self.bn(y), y  # the conv output is a model output


def test_producer_that_is_a_model_output_is_refused() -> None:
    model, x = OutputToo().eval(), torch.randn(2, 3, 8, 8)
    result = fold_batchnorm(model, x)
    assert codes(result) == {"bn": "model_output"}
    assert result.bn_left == 1
    naive = copy.deepcopy(model)
    naive.conv, naive.bn = fuse_conv_bn_eval(naive.conv, naive.bn), nn.Identity()
    assert _wrong(lambda v: naive(v)[1], lambda v: model(v)[1], x) > 0.1  # type: ignore[arg-type]


class CalledTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(4, 4, 1), _bn(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)) * self.conv(x).sigmoid()


def test_module_called_twice_is_refused() -> None:
    """fx `fuse` folds here and corrupts the second call (pytorch/pytorch#104593)."""
    model, x = CalledTwice().eval(), torch.randn(2, 4, 5, 5)
    result = fold_and_check(model, x)
    assert codes(result) == {"bn": "shared_module"}
    naive = copy.deepcopy(model)
    naive.conv, naive.bn = fuse_conv_bn_eval(naive.conv, naive.bn), nn.Identity()
    assert _wrong(naive, model, x) > 0.1


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.bn = nn.Linear(6, 6), nn.Linear(6, 6), _bn(6, cls=nn.BatchNorm1d)
        self.b.weight = self.a.weight  # tied

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.a(x)) + self.b(x)


def test_tied_weight_is_refused() -> None:
    model, x = Tied().eval(), torch.randn(5, 6)
    result = fold_and_check(model, x)
    assert codes(result) == {"bn": "tied_weight"}
    naive = copy.deepcopy(model)  # an in-place fold also rewrites the tied b.weight
    fused = fuse_linear_bn_eval(naive.a, naive.bn)
    with torch.no_grad():
        naive.a.weight.copy_(fused.weight)
        naive.a.bias.copy_(fused.bias)
    naive.bn = nn.Identity()
    assert _wrong(naive, model, x) > 0.1


def test_batch_statistics_bn_is_refused() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)).eval()
    x = torch.randn(4, 3, 6, 6)
    result = fold_and_check(model, x)
    assert codes(result) == {"1": "batch_statistics"}
    # No constant folding exists: a sample's output depends on the rest of the batch.
    with torch.no_grad():
        assert rel_error(model(x[:2])[0], model(x)[0]) > 0.01


def test_functional_batch_norm_in_training_mode_is_refused() -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.register_buffer("mean", torch.zeros(4))
            self.register_buffer("var", torch.ones(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.batch_norm(self.conv(x), self.mean, self.var, training=True)

    result = fold_and_check(M().eval(), torch.randn(4, 3, 5, 5))
    assert codes(result) == {"batch_norm": "batch_statistics"}


class LinearOnNCL(nn.Module):
    """Linear acts on L; BN1d normalises C. With C == L the sizes match (pytorch/ao#4116)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.bn = nn.Linear(5, 5), _bn(5, cls=nn.BatchNorm1d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(x))


def test_bn1d_on_ncl_after_linear_is_refused() -> None:
    model, x = LinearOnNCL().eval(), torch.randn(3, 5, 5)
    result = fold_and_check(model, x)
    assert codes(result) == {"bn": "axis_mismatch"}
    naive = copy.deepcopy(model)  # PyTorch's own util only compares sizes and accepts it
    naive.fc, naive.bn = fuse_linear_bn_eval(naive.fc, naive.bn), nn.Identity()
    assert _wrong(naive, model, x) > 0.1


def test_nonlinearity_between_bn_and_layer_is_refused() -> None:
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), _bn(6, cls=nn.BatchNorm1d), nn.ReLU())
    model.append(nn.Linear(6, 3)).eval()
    x = torch.randn(16, 4)
    result = fold_and_check(model, x)
    assert codes(result) == {"2": "nonlinearity"}
    naive = copy.deepcopy(model)  # forward fold ignoring the ReLU in between
    naive[4] = fuse_linear_bn_forward(naive[4], naive[2])
    naive[2] = nn.Identity()
    assert _wrong(naive, model, x) > 0.01


def fuse_linear_bn_forward(linear: nn.Linear, bn: nn.Module) -> nn.Linear:
    """A naive forward fold: Linear(BN(x)) = (W s) x + (b + W t)."""
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # type: ignore[operator]
    t = bn.bias - bn.running_mean * s  # type: ignore[operator]
    out = copy.deepcopy(linear)
    with torch.no_grad():
        out.weight.copy_(linear.weight * s)
        out.bias.copy_(linear.bias + linear.weight @ t)
    return out


def _forward_into(layer: nn.Module, channels: int) -> tuple[nn.Sequential, nn.Sequential]:
    """(model BN -> layer, naive fold of BN's shift/scale into layer as if every tap were real)."""
    torch.manual_seed(0)
    model = nn.Sequential(_bn(channels, seed=1), layer).eval()
    bn = model[0]
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    t = bn.bias - bn.running_mean * s
    naive = copy.deepcopy(layer)
    with torch.no_grad():
        transposed = isinstance(layer, nn.ConvTranspose2d)
        view = (-1, 1, 1, 1) if transposed else (1, -1, 1, 1)
        naive.weight.mul_(s.reshape(view))
        shift = (layer.weight * t.reshape(view)).sum(dim=(0, 2, 3) if transposed else (1, 2, 3))
        naive.bias.add_(shift)
    return model, nn.Sequential(naive)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_forward_fold_into_reflect_replicate_circular_padding_is_exact(mode: str) -> None:
    model, naive = _forward_into(nn.Conv2d(4, 3, 3, padding=1, padding_mode=mode), 4)
    x = torch.randn(2, 4, 6, 6)
    result = fold_and_check(model, x)
    assert result.report.entries[0].direction == "forward"
    assert _wrong(naive, model, x) < 1e-5  # the same maths is exact here


def test_forward_fold_into_zero_padded_conv_is_refused() -> None:
    model, naive = _forward_into(nn.Conv2d(4, 3, 3, padding=1), 4)
    x = torch.randn(2, 4, 6, 6)
    assert codes(fold_and_check(model, x)) == {"0": "zero_padding"}
    assert _wrong(naive, model, x) > 0.01  # the border outputs are off


def test_forward_fold_into_strided_conv_transpose_is_refused() -> None:
    model, naive = _forward_into(nn.ConvTranspose2d(4, 3, 3, stride=2, padding=2), 4)
    x = torch.randn(2, 4, 6, 6)
    assert codes(fold_and_check(model, x)) == {"0": "conv_transpose_stride"}
    assert _wrong(naive, model, x) > 0.01


def test_forward_fold_into_conv_transpose_with_border_taps_is_refused() -> None:
    model, naive = _forward_into(nn.ConvTranspose2d(4, 3, 3, padding=1), 4)
    x = torch.randn(2, 4, 6, 6)
    assert codes(fold_and_check(model, x)) == {"0": "conv_transpose_border"}
    assert _wrong(naive, model, x) > 0.01


def test_forward_fold_into_full_overlap_conv_transpose_is_exact() -> None:
    model, _ = _forward_into(nn.ConvTranspose2d(4, 3, 3, padding=2), 4)
    result = fold_and_check(model, torch.randn(2, 4, 6, 6))
    assert result.report.entries[0].direction == "forward"


def test_dtype_overflow_is_refused() -> None:
    """A float16 Linear whose folded weights exceed 65504: folding anyway gives inf."""
    bn = nn.BatchNorm1d(3, eps=1e-12).eval()
    with torch.no_grad():
        bn.running_var.fill_(1e-10)
        bn.weight.fill_(1.0)
    model = nn.Sequential(nn.Linear(3, 3).half(), bn.half()).eval()
    with torch.no_grad():
        model[0].weight.fill_(10.0)
    result = fold_batchnorm(model, torch.randn(2, 3).half())
    assert codes(result) == {"1": "dtype_range"}
    assert result.bn_left == 1
    naive = fuse_linear_bn_eval(model[0], model[1])
    assert not torch.isfinite(naive.weight).all()


def test_failed_verification_is_rolled_back() -> None:
    model = randomise_bn(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))).eval()
    x = torch.randn(2, 3, 6, 6)
    result = fold_batchnorm(model, x, tolerance=1e-30)
    (entry,) = result.report.entries
    assert entry.reason_code == "verification_failed" and entry.error is not None
    assert result.bn_left == 1
    with torch.no_grad():  # rolled back: the conv keeps its weights
        assert torch.equal(result.model.get_submodule("0").weight, model[0].weight)
        assert torch.equal(result.model(x), model(x))


def test_statistics_computed_in_the_graph_are_refused() -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.register_buffer("mean", torch.zeros(4))
            self.log_var = nn.Parameter(torch.zeros(4))  # fx proxies parameters, not buffers

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.batch_norm(self.conv(x), self.mean, self.log_var.exp(), training=False)

    result = fold_and_check(M().eval(), torch.randn(2, 3, 4, 4))
    assert codes(result) == {"batch_norm": "non_constant_statistics"}


def test_subclass_with_its_own_forward_is_not_a_foldable_layer() -> None:
    class Doubled(nn.Conv2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * 2 + 1

    model = nn.Sequential(Doubled(3, 4, 1), _bn(4), nn.ReLU()).eval()
    result = fold_and_check(model, torch.randn(2, 3, 4, 4))
    assert result.report.refused == 1


def test_training_mode_raises_a_usage_and_value_error() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    with pytest.raises(FoldingError, match="training mode"):
        fold_batchnorm(model, torch.randn(2, 3, 4, 4))
    assert issubclass(FoldingError, ValueError) and issubclass(FoldingError, UsageError)
    model.eval()
    model[1].train()  # one BN left in training mode is refused too
    with pytest.raises(ValueError, match="1"):
        fold_batchnorm(model, torch.randn(2, 3, 4, 4))


def test_untraceable_model_raises_folding_error() -> None:
    class Dynamic(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x

    with pytest.raises(FoldingError, match=r"torch\.fx"):
        fold_batchnorm(Dynamic().eval(), torch.randn(2))


def test_forward_fold_into_conv_transpose_with_output_padding_is_refused() -> None:
    """Full overlap except the extra output_padding row, which sees fewer taps."""
    layer = nn.ConvTranspose2d(4, 3, 3, padding=4, dilation=2, output_padding=1)
    model, naive = _forward_into(layer, 4)
    x = torch.randn(2, 4, 9, 9)
    assert codes(fold_and_check(model, x)) == {"0": "conv_transpose_border"}
    assert _wrong(naive, model, x) > 0.01


class Concat(nn.Module):
    def __init__(self, second: str = "conv", dim: int = 1) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 3 if dim == 1 else 4, 1)
        self.second, self.dim = second, dim
        self.bn = _bn(7 if dim == 1 else 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        other = self.b(x) if self.second == "conv" else x  # raw input: no layer to fold into
        return self.bn(torch.cat([self.a(x), other], dim=self.dim))


def test_bn_after_concat_is_split_over_the_producers() -> None:
    model, x = Concat().eval(), torch.randn(2, 3, 5, 5)
    (entry,) = fold_and_check(model, x).report.entries
    assert entry.status == "folded" and entry.target == "a, b"


def test_bn_after_concat_with_an_unfoldable_input_is_refused_whole() -> None:
    model, x = Concat(second="input").eval(), torch.randn(2, 3, 5, 5)
    result = fold_and_check(model, x)
    (entry,) = result.report.entries
    assert entry.status == "refused" and "concat input #1: its input comes from model input" in str(
        entry.reason
    )
    # Folding only the conv's share would leave the raw-input channels unnormalised.
    naive = copy.deepcopy(model)
    bn = naive.bn
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    with torch.no_grad():
        naive.a.weight.mul_(s[:4].reshape(-1, 1, 1, 1))
        naive.a.bias.copy_((naive.a.bias - bn.running_mean[:4]) * s[:4] + bn.bias[:4])
    naive.bn = nn.Identity()
    assert _wrong(naive, model, x) > 0.1


def test_bn_after_concat_along_another_axis_folds_whole_into_each_producer() -> None:
    model, x = Concat(dim=2).eval(), torch.randn(2, 3, 5, 5)
    (entry,) = fold_and_check(model, x).report.entries
    assert entry.status == "folded" and entry.target == "a, b"


def test_concat_split_is_all_or_nothing() -> None:
    model, x = Concat().eval(), torch.randn(2, 3, 5, 5)
    result = fold_batchnorm(model, x, tolerance=1e-30)
    assert codes(result) == {"bn": "verification_failed"}
    for name in ("a", "b"):  # neither producer was changed
        assert torch.equal(result.model.get_submodule(name).weight, getattr(model, name).weight)

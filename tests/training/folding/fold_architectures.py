"""Real architectures for the folding tests (and the figures in the issue's closing note).

Each builder returns ``(model, example_input)`` with randomised BN statistics.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from fold_helpers import randomise_bn
from torch import Tensor, nn


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


# --- residual -------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(cin, cout, 3, stride),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


def residual() -> tuple[nn.Module, Tensor]:
    model = nn.Sequential(
        conv_bn(3, 16),
        BasicBlock(16, 16, 1),
        BasicBlock(16, 32, 2),
        BasicBlock(32, 32, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    return randomise_bn(model, 1), torch.randn(4, 3, 16, 16)


# --- depthwise-separable with squeeze-excitation ----------------------------------------------
class SqueezeExcite(nn.Module):
    def __init__(self, c: int, r: int = 4) -> None:
        super().__init__()
        self.reduce, self.expand = nn.Conv2d(c, c // r, 1), nn.Conv2d(c // r, c, 1)

    def forward(self, x: Tensor) -> Tensor:
        w = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.expand(F.relu(self.reduce(w))))


class InvertedResidual(nn.Module):
    def __init__(self, c: int, expand: int, stride: int) -> None:
        super().__init__()
        hidden = c * expand
        self.use_residual = stride == 1
        self.expand = nn.Sequential(
            nn.Conv2d(c, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()
        )
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.Hardswish(),
        )
        self.se = SqueezeExcite(hidden)
        self.project = nn.Sequential(nn.Conv2d(hidden, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.use_residual else y


def depthwise_se() -> tuple[nn.Module, Tensor]:
    model = nn.Sequential(
        conv_bn(3, 16, stride=2),
        InvertedResidual(16, 4, 1),
        InvertedResidual(16, 6, 2),
        InvertedResidual(16, 6, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(16, 10),
    )
    return randomise_bn(model, 2), torch.randn(4, 3, 32, 32)


# --- dense block with pre-activation BN ---------------------------------------------------------
class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(F.relu(self.bn1(x)))  # pre-activation: BN -> ReLU -> conv
        return torch.cat([x, self.conv2(F.relu(self.bn2(y)))], 1)


def dense() -> tuple[nn.Module, Tensor]:
    layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, padding=1, bias=False)]
    c = 16
    for _ in range(3):
        layers.append(DenseLayer(c, 8))
        c += 8
    layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1), nn.AvgPool2d(2)]
    layers += [DenseLayer(c // 2, 8), nn.BatchNorm2d(c // 2 + 8), nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c // 2 + 8, 10)]
    return randomise_bn(nn.Sequential(*layers), 3), torch.randn(4, 3, 16, 16)


# --- inception-style branches -------------------------------------------------------------------
class Inception(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.b1 = conv_bn(cin, 8, 1)
        self.b3 = nn.Sequential(conv_bn(cin, 8, 1), conv_bn(8, 12, 3))
        self.b5 = nn.Sequential(conv_bn(cin, 4, 1), conv_bn(4, 6, 5))
        self.pool_proj = nn.Conv2d(cin, 6, 1, bias=False)
        self.register_buffer("pool_mean", torch.zeros(6))
        self.register_buffer("pool_var", torch.ones(6))

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.pool_proj(F.max_pool2d(x, 3, 1, 1))
        # A functional BN (buffers passed by hand), as in hand-written models.
        pooled = F.relu(F.batch_norm(pooled, self.pool_mean, self.pool_var, training=False))
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), pooled], 1)


class InceptionSharedBN(nn.Module):
    """Branches without their own BN; one BN after the concat (split over the branches)."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.b1 = nn.Conv2d(cin, 8, 1)
        self.b3 = nn.Conv2d(cin, 8, 3, padding=2, dilation=2, bias=False)
        self.sep = nn.Sequential(
            nn.Conv2d(cin, 16, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1, groups=16)
        )
        self.bn = nn.BatchNorm2d(32)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(torch.cat([self.b1(x), self.b3(x), self.sep(x)], dim=1)))


def inception() -> tuple[nn.Module, Tensor]:
    model = nn.Sequential(
        nn.BatchNorm2d(3),  # input normalisation: feeds only the stem conv (padding 0)
        nn.Conv2d(3, 16, 3, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        Inception(16),
        Inception(32),
        InceptionSharedBN(32),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    model = randomise_bn(model, 4)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, Inception):
                m.pool_mean.normal_()
                m.pool_var.uniform_(0.5, 2)
    return model, torch.randn(4, 3, 18, 18)


# --- encoder-decoder with ConvTranspose --------------------------------------------------------
class EncoderDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc1 = conv_bn(3, 16)
        self.enc2 = conv_bn(16, 32, stride=2)
        self.up = nn.Sequential(
            nn.ConvTranspose2d(32, 16, 2, stride=2, groups=4, bias=False),  # grouped deconv
            nn.BatchNorm2d(16),
            nn.ReLU(),
        )
        self.merge = conv_bn(32, 16)
        self.post_bn = nn.BatchNorm2d(16)  # after the ReLU: folds forward into a reflect conv
        self.smooth = nn.Conv2d(16, 16, 3, padding=1, padding_mode="reflect")
        self.refine = nn.Sequential(nn.ReLU(), nn.BatchNorm2d(16))  # feeds a strided deconv
        self.out_up = nn.ConvTranspose2d(16, 4, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x: Tensor) -> Tensor:
        e1 = self.enc1(x)
        up = self.up(self.enc2(e1))
        y = self.smooth(self.post_bn(self.merge(torch.cat([up, e1], 1))))
        return self.out_up(self.refine(y))


def encoder_decoder() -> tuple[nn.Module, Tensor]:
    return randomise_bn(EncoderDecoder(), 5), torch.randn(2, 3, 16, 16)


# --- the project's default MLP layout (BN after the ReLU) ------------------------------------
def mlp_bn_after_relu() -> tuple[nn.Module, Tensor]:
    model = nn.Sequential(
        nn.Linear(30, 64),
        nn.ReLU(),
        nn.BatchNorm1d(64),
        nn.Dropout(0.1),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.BatchNorm1d(32),
        nn.Linear(32, 2),
    )
    return randomise_bn(model, 6), torch.randn(64, 30)


ARCHITECTURES: dict[str, Callable[[], tuple[nn.Module, Tensor]]] = {
    "residual": residual,
    "depthwise_se": depthwise_se,
    "dense_preact": dense,
    "inception": inception,
    "encoder_decoder": encoder_decoder,
    "mlp_bn_after_relu": mlp_bn_after_relu,
}


def main() -> None:
    """Print the figures of the issue's closing note: one row per architecture."""
    from training.folding import fold_batchnorm

    header = f"{'architecture':<20}{'BN':>4}{'folded':>8}{'refused':>9}  {'refused by reason':<32}"
    print(f"{header}{'model rel err':>14}{'max fold err':>14}")
    for name, build in ARCHITECTURES.items():
        torch.manual_seed(0)
        model, x = build()
        report = fold_batchnorm(model.eval(), x).report
        reasons = ", ".join(f"{k}: {v}" for k, v in report.refused_by_reason().items()) or "-"
        print(
            f"{name:<20}{report.bn_total:>4}{report.folded:>8}{report.refused:>9}  {reasons:<32}"
            f"{report.model_relative_error:>14.2e}{report.max_fold_error():>14.2e}"
        )


if __name__ == "__main__":
    main()

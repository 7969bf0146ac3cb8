"""Users' own modules for the export-module tests: a ResNet-style CNN and a tabular MLP.

Written here, not taken from the project, as a user would write them; BN
statistics are randomised so that folding has something to get wrong.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN; a 1x1 conv + BN downsample when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + identity)


class DepthwiseBlock(nn.Module):
    """Depthwise 3x3 -> ReLU -> BN (after the activation) -> pointwise 1x1 -> BN -> ReLU."""

    def __init__(self, channels: int, padded_pointwise: bool = False) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels)
        self.bn_after_relu = nn.BatchNorm2d(channels)
        # padding 0: the BN after the ReLU folds forward into it; padding 1 would refuse.
        k, p = (3, 1) if padded_pointwise else (1, 0)
        self.pointwise = nn.Conv2d(channels, channels, k, 1, p, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn_after_relu(F.relu(self.depthwise(x)))
        return F.relu(self.bn(self.pointwise(y)))


class ResNetStyle(nn.Module):
    """Stem, two residual stages (the second with a 1x1 downsample), a depthwise block, and
    a head with a BatchNorm1d after its ReLU."""

    def __init__(
        self,
        classes: int = 10,
        width: int = 8,
        stem_padding: int = 1,
        padded_pointwise: bool = False,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, 1, stem_padding, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.layer1 = BasicBlock(width, width, 1)
        self.layer2 = BasicBlock(width, 2 * width, 2)
        self.block = DepthwiseBlock(2 * width, padded_pointwise)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(2 * width, 32)
        self.bn_head = nn.BatchNorm1d(32)
        self.fc2 = nn.Linear(32, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block(self.layer2(self.layer1(self.stem(x))))
        x = torch.flatten(self.pool(x), 1)
        return self.fc2(self.bn_head(F.relu(self.fc1(x))))


class TabularMLP(nn.Module):
    """Linear -> BN1d -> ReLU twice, then the classifier."""

    def __init__(self, features: int = 13, classes: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(features, 32, bias=False),
            nn.BatchNorm1d(32),
            nn.ReLU(),
            nn.Linear(32, 16, bias=False),
            nn.BatchNorm1d(16),
            nn.ReLU(),
            nn.Linear(16, classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BN statistics (as after training), eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
                module.running_var.copy_(0.3 + torch.rand(n, generator=generator))
                module.weight.copy_(0.5 + torch.rand(n, generator=generator))
                module.bias.copy_(torch.rand(n, generator=generator) - 0.5)
    return model.eval()


def bn_count(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def resnet() -> nn.Module:
    """Factory for ``export-module``: the ResNet-style module with random weights."""
    torch.manual_seed(0)
    return randomise(ResNetStyle())


def mlp() -> nn.Module:
    """Factory for ``export-module``: the tabular MLP."""
    torch.manual_seed(0)
    return randomise(TabularMLP())

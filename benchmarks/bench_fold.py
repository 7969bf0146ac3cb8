"""Benchmark: fold every BatchNorm of a ResNet-50-sized network (target: <= 3 s).

The ResNet-50 is written here (no torchvision): bottleneck blocks [3, 4, 6, 3],
25.6 M parameters, 53 BatchNorm2d. Its running statistics are randomised so that
folds are not trivial. Besides the absolute time, the run reports the ratio to
one plain eval forward pass, timed between the folds (the machine is shared, so
the ratio of the best times is the steadier figure).

Run: ``.venv/bin/python -m benchmarks.bench_fold [--size 224] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

from training.folding import fold_batchnorm

TARGET_SECONDS = 3.0


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 with BN after each conv, projection shortcut when needed."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """The torchvision ResNet-50 layout (v1.5: stride in the 3x3 conv)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        layers: list[nn.Module] = []
        cin = 64
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for i in range(blocks):
                layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
                cin = width * Bottleneck.expansion
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BN non-trivial statistics (as after training)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) * 2 + 0.1)
                m.weight.copy_(torch.randn(n, generator=gen))
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
    return model


def main(argv: list[str] | None = None) -> int:
    """Time the fold; print a JSON line; exit 1 if the best time misses the target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="input height/width")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model = randomise_bn(ResNet50()).eval()
    x = torch.randn(1, 3, args.size, args.size)
    with torch.no_grad():
        model(x)  # warm-up
    times, forwards = [], []
    for _ in range(args.repeat):
        # Interleave the baseline forward pass with the folds: both see the same load.
        with torch.no_grad():
            start = time.perf_counter()
            model(x)
            forwards.append(time.perf_counter() - start)
        start = time.perf_counter()
        result = fold_batchnorm(model, x)
        times.append(time.perf_counter() - start)
    forward_s = min(forwards)
    report = result.report
    best = min(times)
    print(
        json.dumps(
            {
                "benchmark": "fold_resnet50",
                "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                "input": [1, 3, args.size, args.size],
                "bn_total": report.bn_total,
                "folded": report.folded,
                "refused": report.refused,
                "model_relative_error": report.model_relative_error,
                "fold_seconds": [round(t, 3) for t in times],
                "best_seconds": round(best, 3),
                "forward_seconds": [round(t, 3) for t in forwards],
                "ratio_to_forward": round(best / forward_s, 1),
                "target_seconds": TARGET_SECONDS,
                "ok": best <= TARGET_SECONDS,
            }
        )
    )
    return 0 if best <= TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())

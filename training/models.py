"""MLP and CNN of (Linear | Conv2d) -> BatchNorm -> ReLU blocks, built from a ``ModelConfig``.

The network takes STANDARDIZED input. Its layout is one flat ``nn.Sequential``
(``model.layers``) so that folding can walk it in order:

- ``bn_position="before"``: layer(bias=False) -> BN -> ReLU; BN's beta
  replaces the bias, and BN folds backward into the layer before it.
- ``bn_position="after"``:  layer(bias=True) -> ReLU -> BN; the ReLU sits
  between layer and BN, so the layer keeps its bias and BN folds forward into
  the next layer.

An MLP adds Dropout after every block; a CNN has one Dropout, after Flatten
(when ``dropout > 0``). Last comes a Linear classifier with bias. Every conv
is unpadded: a zero-padded conv would see its padding move under the affine
maps that folding pushes into it (the input standardization, or a BN folded
forward), so padding 0 keeps every fold exact.
"""

from __future__ import annotations

from torch import Tensor, nn

from training.config import ModelConfig


class BNNet(nn.Module):
    """A stack of BN blocks and a linear classifier; returns logits."""

    def __init__(self, config: ModelConfig, layers: nn.Sequential) -> None:
        super().__init__()
        self.config = config
        self.layers = layers

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)

    def input_layer(self) -> nn.Conv2d | nn.Linear:
        """The first Conv2d/Linear: the layer that reads the (standardized) input."""
        for module in self.layers:
            if isinstance(module, nn.Conv2d | nn.Linear):
                return module
        raise AssertionError("a BNNet always starts with a Conv2d or Linear")

    def batch_norms(self) -> list[tuple[str, nn.modules.batchnorm._BatchNorm]]:
        """``(name, module)`` of every BatchNorm layer, in forward order."""
        return batch_norm_layers(self)


def batch_norm_layers(model: nn.Module) -> list[tuple[str, nn.modules.batchnorm._BatchNorm]]:
    """``(name, module)`` of every BatchNorm layer of ``model``, in registration order."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
    ]


def build_model(config: ModelConfig) -> BNNet:
    """The unfolded network for ``config`` (validated first), in training mode."""
    config.validate()
    cnn = config.kind == "cnn"
    before = config.bn_position == "before"
    layers: list[nn.Module] = []
    channels = config.in_shape[0]
    for width in config.widths:
        layer: nn.Module
        if cnn:
            layer = nn.Conv2d(channels, width, config.kernel_size, padding=0, bias=not before)
            bn: nn.Module = nn.BatchNorm2d(width, eps=config.bn_eps, momentum=config.bn_momentum)
        else:
            layer = nn.Linear(channels, width, bias=not before)
            bn = nn.BatchNorm1d(width, eps=config.bn_eps, momentum=config.bn_momentum)
        layers += [layer, bn, nn.ReLU()] if before else [layer, nn.ReLU(), bn]
        if config.dropout > 0 and not cnn:
            layers.append(nn.Dropout(config.dropout))
        channels = width
    features = channels
    if cnn:
        shrink = len(config.widths) * (config.kernel_size - 1)
        height, width_px = config.in_shape[1] - shrink, config.in_shape[2] - shrink
        features = channels * height * width_px
        layers.append(nn.Flatten())
        if config.dropout > 0:
            layers.append(nn.Dropout(config.dropout))
    layers.append(nn.Linear(features, config.num_classes))
    return BNNet(config, nn.Sequential(*layers))

"""Model construction (training/models.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from training.config import ModelConfig
from training.errors import UsageError
from training.models import build_model


def cnn_config(**overrides: object) -> ModelConfig:
    values: dict = {"kind": "cnn", "in_shape": (1, 8, 8), "num_classes": 10, "widths": (4, 8, 16)}
    return ModelConfig(**{**values, **overrides})


def mlp_config(**overrides: object) -> ModelConfig:
    values: dict = {"kind": "mlp", "in_shape": (30,), "num_classes": 2, "widths": (16, 8)}
    return ModelConfig(**{**values, **overrides})


def kinds(model: nn.Module) -> list[str]:
    return [type(m).__name__ for m in model.layers]


def test_cnn_blocks_and_output_shape() -> None:
    model = build_model(cnn_config())
    assert kinds(model) == [
        "Conv2d", "BatchNorm2d", "ReLU",
        "Conv2d", "BatchNorm2d", "ReLU",
        "Conv2d", "BatchNorm2d", "ReLU",
        "Flatten", "Linear",
    ]  # fmt: skip
    assert model(torch.randn(5, 1, 8, 8)).shape == (5, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is None for c in convs)  # BN's beta replaces the bias
    assert all(c.padding == (0, 0) for c in convs)  # exact folding of standardization
    assert model.input_layer() is convs[0]
    assert model.layers[-1].bias is not None


def test_mlp_with_dropout_and_bn_after_activation() -> None:
    model = build_model(mlp_config(dropout=0.3, bn_position="after"))
    assert kinds(model) == [
        "Linear", "ReLU", "BatchNorm1d", "Dropout",
        "Linear", "ReLU", "BatchNorm1d", "Dropout",
        "Linear",
    ]  # fmt: skip
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    # With a ReLU between layer and BN, beta cannot stand in for the bias.
    assert all(layer.bias is not None for layer in linears)
    assert model.input_layer() is linears[0]
    assert model(torch.randn(4, 30)).shape == (4, 2)


def test_bn_options_reach_the_layers() -> None:
    model = build_model(mlp_config(bn_momentum=0.03, bn_eps=1e-3))
    bns = [bn for _, bn in model.batch_norms()]
    assert len(bns) == 2
    assert all(bn.momentum == 0.03 and bn.eps == 1e-3 for bn in bns)
    assert [name for name, _ in model.batch_norms()] == ["layers.1", "layers.4"]


def test_cnn_dropout_only_before_classifier() -> None:
    model = build_model(cnn_config(dropout=0.5))
    assert kinds(model)[-3:] == ["Flatten", "Dropout", "Linear"]
    assert kinds(model).count("Dropout") == 1


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (cnn_config(widths=(4, 4, 4, 4)), "too small"),
        (cnn_config(in_shape=(64,)), "needs \\(C, H, W\\)"),
        (mlp_config(in_shape=(1, 8, 8)), "1-D samples"),
        (mlp_config(widths=()), "--widths"),
        (mlp_config(dropout=1.0), "--dropout"),
        (mlp_config(bn_momentum=0.0), "--bn-momentum"),
        (mlp_config(bn_eps=0.0), "--bn-eps"),
        (mlp_config(num_classes=1), "at least 2 classes"),
    ],
)
def test_invalid_config_is_a_usage_error(config: ModelConfig, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        build_model(config)


def test_config_round_trip() -> None:
    config = cnn_config(dropout=0.1, bn_position="after")
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(UsageError, match="unknown ModelConfig fields: colour"):
        ModelConfig.from_dict({**config.to_dict(), "colour": "red"})

"""Exact whole-training-set BN statistics (training/stats.py), against a numpy oracle."""

from __future__ import annotations

import numpy as np
import torch

from training.config import ModelConfig
from training.models import build_model
from training.stats import (
    bn_buffers,
    channel_moments,
    load_bn_buffers,
    merge_moments,
    recompute_exact_bn_stats,
)


def trained_like(model: torch.nn.Module, seed: int = 0) -> None:
    """Give BN layers non-trivial gamma/beta and garbage buffers, as after training."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, bn in model.batch_norms():
            bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
            bn.bias.copy_(torch.randn(bn.num_features, generator=gen))
            bn.running_mean.fill_(123.0)
            bn.running_var.fill_(456.0)


def np_bn(z: np.ndarray, mean: np.ndarray, var: np.ndarray, bn: torch.nn.Module) -> np.ndarray:
    shape = (1, -1) + (1,) * (z.ndim - 2)
    g, b = bn.weight.detach().double().numpy(), bn.bias.detach().double().numpy()
    return (z - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + bn.eps) * g.reshape(
        shape
    ) + b.reshape(shape)


def test_mlp_exact_stats_match_numpy_layer_by_layer() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig("mlp", (5,), 3, (7, 4), dropout=0.5))
    trained_like(model)
    x = torch.randn(301, 5) * 2 + 1
    result = recompute_exact_bn_stats(model, x, batch_size=64)  # batches of unequal size
    assert not model.training

    w1 = model.layers[0].weight.detach().double().numpy()
    w2 = model.layers[4].weight.detach().double().numpy()
    z1 = x.double().numpy() @ w1.T
    mean1, var1 = z1.mean(axis=0), z1.var(axis=0, ddof=1)
    # Layer 2 sees layer 1 normalized with ITS exact statistics (and no dropout).
    z2 = np.maximum(np_bn(z1, mean1, var1, model.layers[1]), 0.0) @ w2.T
    mean2, var2 = z2.mean(axis=0), z2.var(axis=0, ddof=1)

    bn1, bn2 = model.layers[1], model.layers[5]
    for bn, mean, var in ((bn1, mean1, var1), (bn2, mean2, var2)):
        np.testing.assert_allclose(bn.running_mean.numpy(), mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bn.running_var.numpy(), var, rtol=1e-5)
    np.testing.assert_allclose(result["layers.5"][1].numpy(), var2, rtol=1e-6)


def test_cnn_exact_stats_are_per_channel_over_batch_and_pixels() -> None:
    torch.manual_seed(1)
    model = build_model(ModelConfig("cnn", (2, 6, 6), 4, (3, 5), bn_position="after"))
    trained_like(model, seed=1)
    x = torch.randn(40, 2, 6, 6)
    batches = [(x[:13], None), (x[13:],)]  # an iterable of tuples works like a tensor
    recompute_exact_bn_stats(model, batches)

    conv1 = model.layers[0]
    with torch.no_grad():
        z1 = torch.relu(conv1(x)).double().numpy()  # BN after the ReLU sees the ReLU's output
    mean1 = z1.mean(axis=(0, 2, 3))
    var1 = z1.transpose(1, 0, 2, 3).reshape(3, -1).var(axis=1, ddof=1)
    np.testing.assert_allclose(model.layers[2].running_mean.numpy(), mean1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.layers[2].running_var.numpy(), var1, rtol=1e-5)
    with torch.no_grad():
        h = model.layers[2](torch.relu(conv1(x)))
        z2 = torch.relu(model.layers[3](h)).double().numpy()
    np.testing.assert_allclose(
        model.layers[5].running_mean.numpy(), z2.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6
    )


def test_merge_moments_equals_direct_computation() -> None:
    x = torch.randn(100, 3, 2, 2, dtype=torch.float64) * 5 + 10
    parts = [channel_moments(x[:17]), channel_moments(x[17:60]), channel_moments(x[60:])]
    mean, m2, count = parts[0]
    for part in parts[1:]:
        mean, m2, count = merge_moments((mean, m2, count), part)
    direct_mean, direct_m2, direct_count = channel_moments(x)
    assert count == direct_count == 400
    torch.testing.assert_close(mean, direct_mean)
    torch.testing.assert_close(m2, direct_m2)


def test_buffers_copy_and_restore() -> None:
    model = build_model(ModelConfig("mlp", (3,), 2, (4,)))
    saved = bn_buffers(model)
    recompute_exact_bn_stats(model, torch.randn(50, 3) + 3)
    assert not torch.equal(model.layers[1].running_mean, saved["layers.1"][0])
    load_bn_buffers(model, saved)
    assert torch.equal(model.layers[1].running_mean, saved["layers.1"][0])
    assert torch.equal(model.layers[1].running_var, saved["layers.1"][1])

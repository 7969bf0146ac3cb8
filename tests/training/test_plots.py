"""Plots (training/plots.py): files are real PNGs, one per BN layer."""

from __future__ import annotations

from pathlib import Path

import torch

from training.plots import plot_bn_stats, plot_curves

PNG = b"\x89PNG\r\n\x1a\n"


def test_curves_and_bn_plots(tmp_path: Path) -> None:
    history = [
        {
            "epoch": float(e),
            "train_loss": 1.0 / e,
            "val_loss": 1.2 / e,
            "train_acc": 0.5 + e / 10,
            "val_acc": 0.4 + e / 10,
        }
        for e in range(1, 5)
    ]
    curves = plot_curves(history, tmp_path / "plots" / "curves.png")
    assert curves.read_bytes()[:8] == PNG
    ema = {"layers.1": (torch.randn(4), torch.rand(4)), "layers.4": (torch.randn(2), torch.rand(2))}
    exact = {name: (m + 0.1, v * 1.1) for name, (m, v) in ema.items()}
    paths = plot_bn_stats(ema, exact, tmp_path / "plots")
    assert [p.name for p in paths] == ["bn_0_layers_1.png", "bn_1_layers_4.png"]
    assert all(p.read_bytes()[:8] == PNG and p.stat().st_size > 10_000 for p in paths)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "bn_0_layers_1.png", "bn_1_layers_4.png", "curves.png"
    ]  # fmt: skip

"""Plots (training/plots.py): real PNGs, captions that fit the run, the replayed schedule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

from training import plots
from training.config import ModelConfig, TrainConfig
from training.data import load_splits, make_data_spec
from training.train import fit

PNG = b"\x89PNG\r\n\x1a\n"
CNN = ModelConfig("cnn", (1, 8, 8), 10, (8, 8))
MLP = ModelConfig("mlp", (30,), 2, (16,), dropout=0.2)


def history(epochs: int = 4) -> list[dict[str, float]]:
    return [
        {
            "epoch": float(e),
            "train_loss": 1.0 / e,
            "val_loss": 0.8 / e,
            "train_acc": 0.5 + e / 10,
            "val_acc": 0.4 + e / 10,
            "lr": 0.01,
            "time_s": float(e),
        }
        for e in range(1, epochs + 1)
    ]


def metrics(epochs: int = 4) -> dict[str, float]:
    values = {"best_epoch": float(epochs), "epochs_run": float(epochs)}
    for split in ("train", "val", "test"):
        for mode, shift in (("ema", 0.0), ("exact", 0.01)):
            values[f"{split}_acc_{mode}"] = 0.9 + shift
            values[f"{split}_loss_{mode}"] = 0.3 - shift
    return values


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "constant"])
def test_replayed_schedule_matches_the_rates_the_training_recorded(schedule: str) -> None:
    splits = load_splits(make_data_spec("breast_cancer"))
    cfg = TrainConfig(epochs=3, schedule=schedule, batch_size=32)
    result = fit(splits, ModelConfig("mlp", (30,), 2, (8,)), cfg)
    assert result is not None
    steps = len(splits.train) // cfg.batch_size
    rates = plots.learning_rates(cfg, steps)
    assert len(rates) == cfg.epochs * steps + 1
    recorded = [row["lr"] for row in result.history]
    assert [rates[e * steps] for e in range(1, cfg.epochs + 1)] == pytest.approx(recorded)
    assert max(rates) == pytest.approx(cfg.lr, rel=1e-3)


def test_every_plot_is_a_png_with_its_caption(tmp_path: Path) -> None:
    cfg = TrainConfig(epochs=6, patience=2)
    rows, values = history(4), metrics(4)
    path, caption = plots.plot_curves(rows, values, MLP, cfg, tmp_path / "curves.png")
    assert path.read_bytes()[:8] == PNG and "Markers at epoch 4" in caption
    path, caption = plots.plot_lr(rows, cfg, 5, tmp_path / "lr.png")
    assert path.read_bytes()[:8] == PNG
    assert "stopped early (patience 2)" in caption and "planned for 6 epochs" in caption
    ema = {
        "layers.1": (torch.randn(4), torch.rand(4) + 0.5),
        "layers.4": (torch.randn(2), torch.rand(2)),
    }
    exact = {"layers.1": (torch.zeros(4), torch.rand(4) + 0.5), "layers.4": ema["layers.4"]}
    path, caption = plots.plot_bn_stats(ema, exact, values, MLP, cfg, tmp_path / "bn_stats.png")
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 20_000
    # The zero exact mean of a standardized input into a bias-free layer is explained.
    assert "In layers.1 the exact mean is 0 in every channel" in caption
    assert "layers.4" not in caption
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bn_stats.png", "curves.png", "lr.png"]


def test_a_channel_panel_that_would_be_all_zero_says_so() -> None:
    ax = Figure().add_subplot()
    plots._channel_panel(ax, torch.zeros(5).numpy(), "layers.4: mean shift", "σ", False)
    assert not ax.axison
    assert [t.get_text() for t in ax.texts] == ["EMA = exact in every channel"]
    ax = Figure().add_subplot()
    plots._channel_panel(ax, torch.tensor([0.1, -0.2]).numpy(), "layers.4: mean shift", "σ", True)
    assert ax.axison and "exact mean = 0" in ax.texts[0].get_text()
    assert "max |·| 0.2 σ" in ax.get_title()

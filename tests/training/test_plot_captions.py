"""Plot captions (training/plot_captions.py): they say what applies to the run, truly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_plots import CNN, MLP, history, metrics

from training.config import ModelConfig, TrainConfig
from training.plot_captions import bn_caption, curves_caption, lr_caption, smoothed_loss_floor


@pytest.mark.parametrize(("smoothing", "classes"), [(0.1, 10), (0.2, 2), (0.05, 3)])
def test_smoothed_loss_floor_is_the_least_smoothed_cross_entropy(
    smoothing: float, classes: int
) -> None:
    floor = smoothed_loss_floor(smoothing, classes)
    target = torch.full((1, classes), smoothing / classes, dtype=torch.float64)
    target[0, 0] += 1 - smoothing
    y = torch.tensor([0])
    at_target = F.cross_entropy(target.log(), y, label_smoothing=smoothing)
    assert float(at_target) == pytest.approx(floor, rel=1e-12)
    random = torch.randn(200, classes, dtype=torch.float64) * 3
    losses = F.cross_entropy(random, y.expand(200), label_smoothing=smoothing, reduction="none")
    assert float(losses.min()) > floor
    assert smoothed_loss_floor(0.0, classes) == 0.0


def test_curves_caption_names_the_reasons_that_apply_to_the_run() -> None:
    cnn = curves_caption(history(), metrics(), CNN, TrainConfig(label_smoothing=0.1), 0.5)
    assert "label smoothing 0.1" in cnn and "cannot fall below 0.500" in cnn
    assert "augmentation (training images shifted by up to 1 px)" in cnn
    assert "dropout" not in cnn
    mlp = curves_caption(history(), metrics(), MLP, TrainConfig(), 0.0)
    assert "dropout 0.2" in mlp
    assert "augmentation" not in mlp and "label smoothing 0" not in mlp
    plain = ModelConfig("mlp", (30,), 2, (16,))
    none = curves_caption(history(), metrics(), plain, TrainConfig(), 0.0)
    assert none.count("None of label smoothing, augmentation or dropout applies") == 1
    # The caption does not claim train sits above validation when it does not.
    below = [{**row, "train_loss": row["val_loss"] / 2} for row in history()]
    assert "ends below validation" in curves_caption(below, metrics(), MLP, TrainConfig(), 0)
    assert "0.90% vs 0.91%" not in mlp and "90.00% vs 91.00%" in mlp


def test_lr_and_bn_captions_follow_the_run() -> None:
    assert "stopped early" not in lr_caption(TrainConfig(epochs=5), 4, 5)
    early = lr_caption(TrainConfig(epochs=5, patience=1, schedule="cosine"), 4, 3)
    assert "cosine decay" in early and "stopped early (patience 1)" in early
    assert "4 steps per epoch" in early
    shifted = bn_caption(CNN, TrainConfig(augment_shift=2), [])
    assert "every training image under every shift of up to 2 px" in shifted
    assert "under every shift" not in bn_caption(CNN, TrainConfig(exact_inputs="plain"), [])
    assert "over the training set" in bn_caption(MLP, TrainConfig(), ["layers.1"])
    assert "In layers.1 the exact mean is 0" in bn_caption(MLP, TrainConfig(), ["layers.1"])

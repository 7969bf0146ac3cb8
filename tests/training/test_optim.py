"""Optimizers and schedules (training/optim.py)."""

from __future__ import annotations

import pytest
import torch

from training.config import ModelConfig, TrainConfig
from training.models import build_model
from training.optim import make_optimizer, make_scheduler, parameter_groups


def model() -> torch.nn.Module:
    return build_model(ModelConfig("mlp", (4,), 3, (8,), bn_position="after"))


def test_weight_decay_skips_bn_and_biases() -> None:
    decay, no_decay = parameter_groups(model(), 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"])  # type: ignore[attr-defined]
    assert len(no_decay["params"]) == 4  # type: ignore[arg-type]  # 2 biases + gamma + beta


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("sgd", torch.optim.SGD),
        ("rmsprop", torch.optim.RMSprop),
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
    ],
)
def test_optimizers(name: str, cls: type) -> None:
    optimizer = make_optimizer(model(), TrainConfig(optimizer=name, lr=0.01))
    assert isinstance(optimizer, cls)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "constant"])
def test_schedules_run_the_whole_budget(schedule: str) -> None:
    cfg = TrainConfig(schedule=schedule, epochs=3, lr=0.1)
    optimizer = make_optimizer(model(), cfg)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch=5)
    lrs = []
    for _ in range(15):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    if schedule == "constant":
        assert lrs == [pytest.approx(0.1)] * 15
    else:
        assert max(lrs) <= 0.1 + 1e-12 and lrs[-1] < 0.03 * max(lrs)

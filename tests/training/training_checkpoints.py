"""Checkpoints made without training (random weights and BN statistics), for fast tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from training.checkpoint import Checkpoint, library_versions, save_checkpoint
from training.config import ModelConfig
from training.data import Standardization, load_splits, make_data_spec
from training.models import build_model


def make_checkpoint(
    path: Path,
    dataset: str,
    kind: str,
    widths: tuple[int, ...],
    bn_position: str = "before",
    **data_options: Any,
) -> Path:
    """A checkpoint with random weights and random BN statistics (no training needed);
    ``data_options`` go to ``make_data_spec``."""
    torch.manual_seed(0)
    splits = load_splits(make_data_spec(dataset, **data_options))
    config = ModelConfig(
        kind=kind,  # type: ignore[arg-type]
        in_shape=tuple(splits.sample_shape),
        num_classes=len(splits.labels),
        widths=widths,
        bn_position=bn_position,  # type: ignore[arg-type]
    )
    model = build_model(config)
    for _, bn in model.batch_norms():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.2, 3)
        bn.weight.data.uniform_(-2, 2)
        bn.bias.data.uniform_(-1, 1)
    ckpt = Checkpoint(
        model_config=config,
        state_dict=model.state_dict(),
        standardization=Standardization.fit(splits.train.X),
        input=splits.input_info(),
        labels=splits.labels,
        stats_mode="exact",
        metrics={"test_acc_exact": 0.5},
        train_config={},
        data_spec=splits.spec,
        versions=library_versions(),
    )
    save_checkpoint(path, ckpt)
    return path

"""Options of ``python -m training train`` (shared with ``all``), declared in training.config."""

from __future__ import annotations

import argparse
from typing import Any

from training.config import ConsoleOptions, DataOptions, ModelConfig, RunOptions, TrainConfig
from training.option_parser import add_options

DESCRIPTION = """\
Train a BatchNorm network (CNN for images, MLP for tabular data) and write the
run folder --out: checkpoint.pt, metrics.jsonl (one JSON object per epoch),
summary.json (validation and test accuracy under both EMA and exact BN
statistics) and plots/*.png (learning curves and learning rate; EMA vs exact
statistics per BN layer), each with a caption. Every file is written atomically.

Data parallel: torchrun --nproc_per_node=N -m training train ... [--sync-bn]
(gloo on CPU, nccl on CUDA); only rank 0 prints and writes files."""


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every training option (including ``--out``) to ``parser``, in four groups."""
    for cls in (DataOptions, ModelConfig, TrainConfig, RunOptions, ConsoleOptions):
        add_options(parser, cls)


def register(subparsers: Any) -> None:
    """Add the ``train`` sub-command."""
    parser = subparsers.add_parser(
        "train",
        help="train a BatchNorm network and write its run folder",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_train_arguments(parser)

"""``python -m training train``: train a BatchNorm network and write its run folder.

The run folder (``--out``) receives, each written atomically:
``checkpoint.pt``, ``metrics.jsonl`` (one JSON object per epoch),
``summary.json`` (validation/test accuracy under both EMA and exact BN
statistics, timings, configs) and ``plots/*.png``.

Under ``torchrun --nproc_per_node=N -m training train ...`` every process
trains its share of each batch and only rank 0 prints and writes files.
The options are declared in ``training.config`` (parser: ``train_options``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from training import distributed as tdist
from training.config import DataOptions, ModelConfig, ModelKind, RunOptions, TrainConfig
from training.console import EpochProgress, say, seconds
from training.data import Splits, load_splits, make_data_spec
from training.distributed import DistEnv
from training.errors import UsageError
from training.folder_swap import check_target
from training.option_parser import from_args
from training.run_folder import write_run_folder
from training.train import check_batch_size, fit, resolve_device

__all__ = ["configs_from_args", "run", "run_train", "summary_line"]


def run(args: argparse.Namespace) -> int:
    """The ``train`` command."""
    run_train(args)
    return 0


def configs_from_args(args: argparse.Namespace, splits: Splits) -> tuple[ModelConfig, TrainConfig]:
    """The validated model and training configs that ``args`` ask for on ``splits``."""
    kind: ModelKind = "cnn" if splits.kind == "image" else "mlp"
    if args.kind != "auto":
        kind = "cnn" if args.kind == "cnn" else "mlp"
    if kind == "cnn" and splits.kind != "image":
        raise UsageError("--model cnn needs image data (an .npz with 3-D or 4-D X)")
    if kind == "mlp" and splits.kind != "tabular":
        raise UsageError("--model mlp needs tabular data; use --model cnn for images")
    model_config: ModelConfig = from_args(
        ModelConfig,
        args,
        model_kind=kind,
        kind=kind,
        in_shape=splits.sample_shape,
        num_classes=len(splits.labels),
    )
    model_config.validate()
    train_config: TrainConfig = from_args(TrainConfig, args, model_kind=kind)
    train_config.validate()
    return model_config, train_config


def run_train(args: argparse.Namespace) -> Path:
    """Train as ``args`` say, write the run folder (rank 0), return the checkpoint path.

    Every check of the user's input runs before training starts.
    """
    env = DistEnv.from_environ()
    data: DataOptions = from_args(DataOptions, args)
    data.validate()
    run_options: RunOptions = from_args(RunOptions, args)
    if args.sync_bn and not env.distributed:
        raise UsageError(
            "--sync-bn needs a multi-process launch (torchrun --nproc_per_node=N, N >= 2); "
            "this is a single process"
        )
    spec = make_data_spec(**data.spec_arguments())
    out = data.out or Path("artifacts") / str(spec["name"])
    check_target(out)
    splits = load_splits(spec)
    model_config, train_config = configs_from_args(args, splits)
    check_batch_size(len(splits.train), train_config, env)
    device = resolve_device(train_config.device)
    if run_options.threads and device.type == "cpu":
        torch.set_num_threads(run_options.threads)
    tdist.setup(env, device)
    progress = None
    if env.is_main:
        say(describe_run(splits, model_config, train_config, env, device))
        progress = EpochProgress(train_config.epochs, len(splits.train) // train_config.batch_size)
    finished = False
    try:
        result = fit(splits, model_config, train_config, env, progress)
        finished = True
    finally:
        tdist.teardown(env, finished)
    checkpoint = out / "checkpoint.pt"
    if result is not None:
        write_run_folder(out, result, splits, model_config, train_config, env)
        say(summary_line(result.metrics))
        say(f"wrote {out}/ (checkpoint.pt, metrics.jsonl, summary.json, plots/)")
    return checkpoint


def describe_run(
    splits: Splits, model: ModelConfig, cfg: TrainConfig, env: DistEnv, device: torch.device
) -> str:
    """What is about to train, on what, where; under torchrun the world size and SyncBatchNorm."""
    widths = ",".join(str(w) for w in model.widths)
    text = (
        f"training {model.kind.upper()} {widths} on {splits.spec['name']}: "
        f"{len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test samples, "
        f"{len(splits.labels)} classes; {cfg.epochs} epochs of "
        f"{len(splits.train) // cfg.batch_size} batches of {cfg.batch_size}, {cfg.optimizer} "
        f"{cfg.schedule} lr {cfg.lr:g}, on {device.type}"
    )
    if env.distributed:
        share = cfg.batch_size // env.world_size
        bn = (
            f"SyncBatchNorm on (BN statistics over each global batch of {cfg.batch_size})"
            if cfg.sync_bn
            else f"SyncBatchNorm off (each process normalizes over its own {share} samples; "
            "--sync-bn for global-batch statistics)"
        )
        text += f"\ntorchrun: world size {env.world_size}, {share} samples per process; {bn}"
    return text


def summary_line(metrics: dict[str, float]) -> str:
    """The accuracies under both statistics and the measured timings, as ``all`` states them."""
    m = metrics
    return (
        f"test accuracy: ema {m['test_acc_ema']:.2%}  exact {m['test_acc_exact']:.2%}"
        f"  (val: ema {m['val_acc_ema']:.2%}  exact {m['val_acc_exact']:.2%});"
        f" training loop {seconds(m['train_time_s'])} ({int(m['epochs_run'])} epochs),"
        f" exact statistics {seconds(m['exact_stats_time_s'])}"
    )

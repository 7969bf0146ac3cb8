"""The run folder that ``python -m training train`` writes, every file atomically."""

from __future__ import annotations

import json
from pathlib import Path

from training.atomic import write_text_atomic
from training.checkpoint import Checkpoint, library_versions, save_checkpoint
from training.config import STATS_MODES, ModelConfig, TrainConfig
from training.data import Splits
from training.distributed import DistEnv
from training.folder_swap import update_folder
from training.options import applicable
from training.plots import plot_bn_stats, plot_curves, plot_lr
from training.train import FitResult

# Files of an earlier training's export: a new checkpoint makes them another run's.
STALE_AFTER_TRAINING = ("model.onnx", "card.json", "card.md", "verify.json")


def write_run_folder(
    out: Path,
    result: FitResult,
    splits: Splits,
    model_config: ModelConfig,
    train_config: TrainConfig,
    env: DistEnv,
) -> None:
    """Write checkpoint, per-epoch metrics, summary and plots into ``out``, all at once.

    ``out`` is replaced as a whole (``training.folder_swap``): a crash leaves either the
    previous run folder or this one, never a mix.
    """
    with update_folder(out) as stage:
        for stale in STALE_AFTER_TRAINING:
            (stage / stale).unlink(missing_ok=True)
        _write(stage, result, splits, model_config, train_config, env)


def _write(
    out: Path,
    result: FitResult,
    splits: Splits,
    model_config: ModelConfig,
    train_config: TrainConfig,
    env: DistEnv,
) -> None:
    versions = library_versions()
    save_checkpoint(
        out / "checkpoint.pt",
        Checkpoint(
            model_config=model_config,
            state_dict=result.model.state_dict(),
            standardization=result.standardization,
            input=splits.input_info(),
            labels=splits.labels,
            stats_mode=result.stats_mode,
            metrics=result.metrics,
            train_config=train_config.to_dict(),
            data_spec=splits.spec,
            versions=versions,
        ),
    )
    lines = "".join(json.dumps(row) + "\n" for row in result.history)
    write_text_atomic(out / "metrics.jsonl", lines)
    plots = write_plots(out / "plots", result, model_config, train_config, len(splits.train))
    m = result.metrics
    summary = {
        "dataset": splits.spec["name"],
        "checkpoint": "checkpoint.pt",
        "stats_mode": result.stats_mode,
        "accuracy": {
            split: {mode: m[f"{split}_acc_{mode}"] for mode in STATS_MODES}
            for split in ("train", "val", "test")
        },
        "metrics": m,
        "samples": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "world_size": env.world_size,
        "model_config": applicable(model_config, model_config.kind),
        # Only the options that act on this kind of model (no augmentation for tabular data).
        "train_config": applicable(train_config, model_config.kind),
        "data_spec": splits.spec,
        "plots": [str(p.relative_to(out)) for p in plots],
        "plot_captions": {str(p.relative_to(out)): caption for p, caption in plots.items()},
        "versions": versions,
    }
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")


def write_plots(
    folder: Path, result: FitResult, model: ModelConfig, cfg: TrainConfig, n_train: int
) -> dict[Path, str]:
    """The run's plots and their captions; removes plots an earlier run left behind."""
    history, metrics = result.history, result.metrics
    ema, exact = result.bn_stats["ema"], result.bn_stats["exact"]
    plots = dict(
        [
            plot_curves(history, metrics, model, cfg, folder / "curves.png"),
            plot_lr(history, cfg, n_train // cfg.batch_size, folder / "lr.png"),
            plot_bn_stats(ema, exact, metrics, model, cfg, folder / "bn_stats.png"),
        ]
    )
    for stale in set(folder.glob("*.png")) - set(plots):
        stale.unlink()  # e.g. bn_<i>_<layer>.png of older versions
    return plots

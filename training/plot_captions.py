"""The captions of a run's plots (``training.plots``): what each shows, for this run.

Each caption is drawn under its plot and kept in ``summary.json``; it names the
settings of the run that explain what the plot shows (label smoothing,
augmentation, dropout, the schedule, the inputs of the exact statistics).
"""

from __future__ import annotations

import math

from training.config import ModelConfig, TrainConfig

SCHEDULES = {
    "onecycle": "one-cycle: warm-up to the peak over the first 30% of the steps, then "
    "cosine annealing to about zero",
    "cosine": "cosine decay from the peak to zero",
    "constant": "constant",
}


def smoothed_loss_floor(smoothing: float, classes: int) -> float:
    """The least cross-entropy against label-smoothed targets: their own entropy."""
    if smoothing <= 0:
        return 0.0
    high, low = 1 - smoothing + smoothing / classes, smoothing / classes
    return -(high * math.log(high) + (classes - 1) * low * math.log(low))


def curves_caption(
    history: list[dict[str, float]],
    metrics: dict[str, float],
    model: ModelConfig,
    cfg: TrainConfig,
    floor: float,
) -> str:
    """What the learning curves show, and which of this run's settings keep train above val."""
    reasons = []
    if cfg.label_smoothing:
        reasons.append(
            f"label smoothing {cfg.label_smoothing:g} (the train loss is measured against "
            f"smoothed targets and cannot fall below {floor:.3f}; validation is plain "
            "cross-entropy)"
        )
    if model.kind == "cnn" and cfg.augment_shift:
        reasons.append(f"augmentation (training images shifted by up to {cfg.augment_shift} px)")
    if model.dropout:
        reasons.append(f"dropout {model.dropout:g} (active while training, off for validation)")
    last = history[-1]
    if not reasons:
        verdict = (
            "None of label smoothing, augmentation or dropout applies to this run, so train "
            "and validation differ only by the data, by train figures averaging an epoch in "
            "which the weights still change, and by batch vs EMA statistics."
        )
    elif last["train_loss"] > last["val_loss"]:
        verdict = (
            f"Train loss sits above validation because of {'; '.join(reasons)}; also, train "
            "figures average an epoch in which the weights still improve."
        )
    else:
        verdict = (
            "Train loss ends below validation (the model fits its training set better than new "
            f"data) despite {'; '.join(reasons)}."
        )
    best = int(metrics.get("best_epoch", last["epoch"]))
    return (
        "Loss (log scale) and accuracy per epoch. Train: the mean over the epoch's batches, "
        "BatchNorm normalizing with each batch's own statistics. Validation: the end-of-epoch "
        "weights in eval mode, BatchNorm with its running (EMA) statistics. Markers at epoch "
        f"{best}: the final model's validation under EMA and under exact whole-training-set "
        f"statistics (accuracy {metrics['val_acc_ema']:.2%} vs {metrics['val_acc_exact']:.2%}, "
        f"loss {metrics['val_loss_ema']:.4f} vs {metrics['val_loss_exact']:.4f}). " + verdict
    )


def lr_caption(cfg: TrainConfig, steps_per_epoch: int, epochs_run: int) -> str:
    """What the learning-rate plot shows for this run."""
    caption = (
        f"Learning rate of every optimizer step ({cfg.optimizer}, peak {cfg.lr:g}), schedule "
        f"{SCHEDULES[cfg.schedule]}; {steps_per_epoch} steps per epoch (the last partial batch "
        "of an epoch is dropped so that BatchNorm never sees a 1-sample batch). Dots: the rate "
        "recorded after each epoch, which lies on the line."
    )
    if epochs_run < cfg.epochs:
        caption += (
            f" Training stopped early (patience {cfg.patience}); the schedule was planned "
            f"for {cfg.epochs} epochs."
        )
    return caption


def bn_caption(model: ModelConfig, cfg: TrainConfig, zero_mean_layers: list[str]) -> str:
    """What the EMA-vs-exact figure shows for this run."""
    inputs = "the training set"
    if model.kind == "cnn" and cfg.augment_shift and cfg.exact_inputs == "augmented":
        inputs = f"every training image under every shift of up to {cfg.augment_shift} px"
    text = (
        "PyTorch's running (EMA) BatchNorm statistics against the exact mean and variance of "
        f"each BN input over {inputs}, both with the final weights. Top: loss and accuracy of "
        f"the final model per split under each (the checkpoint keeps {cfg.stats}). Below, one "
        "row per BN layer and one point per channel: how far the EMA statistics move that "
        "channel's normalized output compared with the exact ones, as a shift in units of the "
        "exact standard deviation (left) and a change of scale in percent (right); 0 = the same."
    )
    if zero_mean_layers:
        text += (
            f" In {', '.join(zero_mean_layers)} the exact mean is 0 in every channel (its input "
            "is standardized over the training set and the layer before it has no bias), so "
            "the shift there is the EMA's own noise."
        )
    return text

"""PNG plots of a run, each with a caption that says what it shows and why it looks so.

- ``curves.png``: loss and accuracy per epoch, train vs validation, with the final
  model's validation under EMA and under exact BN statistics;
- ``lr.png``: the learning rate of every optimizer step;
- ``bn_stats.png``: what the EMA statistics change against the exact ones: the
  loss and accuracy per split, and per BN layer and channel the shift and scale
  they would give the normalized output.

Each function returns ``(path, caption)`` (captions: ``training.plot_captions``);
the caption is also drawn under the plot, and ``summary.json`` keeps it. Uses
matplotlib's object API (``Figure``) rather than pyplot: no global state and no
GUI backend, so it works headless and under torchrun.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, ScalarFormatter
from torch import Tensor, nn

from training.atomic import write_with_atomic
from training.config import ModelConfig, TrainConfig
from training.optim import make_optimizer, make_scheduler
from training.plot_captions import bn_caption, curves_caption, lr_caption, smoothed_loss_floor

Buffers = dict[str, tuple[Tensor, Tensor]]
WIDTH_IN = 11.0


def plot_curves(
    history: list[dict[str, float]],
    metrics: dict[str, float],
    model: ModelConfig,
    cfg: TrainConfig,
    path: Path,
) -> tuple[Path, str]:
    """Loss and accuracy per epoch; the final model's validation under both statistics."""
    epochs = [row["epoch"] for row in history]
    best = metrics.get("best_epoch", epochs[-1])
    floor = smoothed_loss_floor(cfg.label_smoothing, model.num_classes)
    caption = curves_caption(history, metrics, model, cfg, floor)
    fig, axes = _figure([4.0], 2, caption)
    loss_ax, acc_ax = axes[0]
    for ax, what, scale in ((loss_ax, "loss", 1.0), (acc_ax, "acc", 100.0)):
        ax.plot(epochs, [scale * r[f"train_{what}"] for r in history], label="train")
        ax.plot(epochs, [scale * r[f"val_{what}"] for r in history], label="validation (EMA)")
        for mode, marker in (("ema", "o"), ("exact", "x")):
            value = scale * metrics[f"val_{what}_{mode}"]
            label = f"final model, validation ({mode} stats)"
            ax.plot(
                [best],
                [value],
                marker,
                markersize=10,
                markerfacecolor="none",
                markeredgewidth=1.5,
                label=label,
            )
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if floor:
        loss_ax.axhline(
            floor,
            color="grey",
            linestyle="--",
            linewidth=1,
            label=f"least smoothed train loss ({floor:.3f})",
        )
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="loss")
    loss_ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    loss_ax.yaxis.set_major_formatter(ScalarFormatter())
    loss_ax.yaxis.set_minor_formatter(NullFormatter())
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    loss_ax.legend(fontsize=8)
    acc_ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path), caption


def learning_rates(cfg: TrainConfig, steps_per_epoch: int) -> list[float]:
    """The rate of every step of ``cfg``'s schedule, then the rate after the last step.

    Replays ``make_scheduler`` on a one-weight model: the same schedule objects
    the training used, so the rate recorded after epoch ``e`` is entry
    ``e * steps_per_epoch``.
    """
    optimizer = make_optimizer(nn.Linear(1, 1), cfg)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    rates = [float(optimizer.param_groups[0]["lr"])]
    for _ in range(cfg.epochs * steps_per_epoch):
        optimizer.step()  # no gradients: a no-op that keeps the scheduler's order check happy
        scheduler.step()
        rates.append(float(optimizer.param_groups[0]["lr"]))
    return rates


def plot_lr(
    history: list[dict[str, float]], cfg: TrainConfig, steps_per_epoch: int, path: Path
) -> tuple[Path, str]:
    """The learning-rate schedule per step, with the rates recorded at each epoch's end."""
    rates = learning_rates(cfg, steps_per_epoch)
    stopped = len(history) < cfg.epochs
    caption = lr_caption(cfg, steps_per_epoch, len(history))
    fig, axes = _figure([3.2], 1, caption)
    ax = axes[0][0]
    steps = np.arange(len(rates) - 1)
    ax.plot(steps / steps_per_epoch, rates[:-1], label="rate of each step")
    ax.plot(
        [r["epoch"] for r in history],
        [r["lr"] for r in history],
        ".",
        markersize=5,
        label="recorded after each epoch (metrics.jsonl)",
    )
    if stopped:
        ax.axvline(
            len(history),
            color="grey",
            linestyle="--",
            linewidth=1,
            label=f"early stop after epoch {len(history)}",
        )
    ax.set(xlabel="epoch", ylabel="learning rate", title=f"learning rate: {cfg.schedule}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path), caption


def plot_bn_stats(
    ema: Buffers,
    exact: Buffers,
    metrics: dict[str, float],
    model: ModelConfig,
    cfg: TrainConfig,
    path: Path,
) -> tuple[Path, str]:
    """EMA vs exact statistics: their effect per split, then per BN layer and channel."""
    layers = []
    for name, (ema_mean, ema_var) in ema.items():
        exact_mean, exact_var = (t.double().numpy() for t in exact[name])
        e_mean, e_var = ema_mean.double().numpy(), ema_var.double().numpy()
        sigma = np.sqrt(exact_var + model.bn_eps)
        shift = (e_mean - exact_mean) / sigma
        scale = 100 * (np.sqrt((e_var + model.bn_eps) / (exact_var + model.bn_eps)) - 1)
        zero_mean = bool(np.all(np.abs(exact_mean) <= 1e-6 * sigma))
        layers.append((name, shift, scale, zero_mean))
    caption = bn_caption(model, cfg, [name for name, *_, zero in layers if zero])
    fig, axes = _figure([2.8] + [2.4] * len(layers), 2, caption)
    _effect_row(axes[0], metrics)
    for (name, shift, scale, zero_mean), row in zip(layers, axes[1:], strict=True):
        label = f"{name} ({len(shift)} channels)"
        _channel_panel(row[0], shift, f"{label}: mean shift (EMA - exact) / σ", "σ", zero_mean)
        _channel_panel(row[1], scale, f"{label}: scale σ_EMA / σ_exact - 1", "%", False)
    return _save(fig, path), caption


def _effect_row(row: Any, metrics: dict[str, float]) -> None:
    splits = [s for s in ("train", "val", "test") if f"{s}_acc_ema" in metrics]
    x = np.arange(len(splits))
    for ax, what, scale, unit in ((row[0], "loss", 1.0, ""), (row[1], "acc", 100.0, "%")):
        for offset, mode in ((-0.2, "ema"), (0.2, "exact")):
            values = [scale * metrics[f"{s}_{what}_{mode}"] for s in splits]
            bars = ax.bar(x + offset, values, width=0.4, label=f"{mode} statistics")
            ax.bar_label(bars, fmt="{:.4g}" + unit, fontsize=7)
        ax.set_xticks(x, splits)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8, loc="upper left", ncols=2)
    high = max(metrics[f"{s}_loss_{m}"] for s in splits for m in ("ema", "exact"))
    row[0].set_ylim(0, 1.35 * high)
    low = min(100 * metrics[f"{s}_acc_{m}"] for s in splits for m in ("ema", "exact"))
    bottom = max(0.0, low - 5)
    row[1].set_ylim(bottom, 100 + 0.35 * (100 - bottom))
    row[0].set(title="loss (cross-entropy) per split", ylabel="loss")
    row[1].set(title="accuracy per split (axis zoomed)", ylabel="accuracy (%)")


def _channel_panel(ax: Any, values: np.ndarray, title: str, unit: str, zero_mean: bool) -> None:
    worst = float(np.abs(values).max()) if len(values) else 0.0
    if worst == 0.0:
        ax.text(
            0.5,
            0.5,
            "EMA = exact in every channel",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
    else:
        ax.axhline(0, color="grey", linewidth=1)
        ax.plot(np.arange(len(values)), values, ".", markersize=6)
        ax.set(xlabel="channel", ylabel=unit)
        ax.grid(alpha=0.3)
        if zero_mean:
            ax.text(
                0.01,
                0.95,
                "exact mean = 0 in every channel",
                transform=ax.transAxes,
                va="top",
                fontsize=8,
                color="dimgrey",
            )
    ax.set_title(f"{title}: max |·| {worst:.3g} {unit}", fontsize=9)


def _figure(rows: list[float], cols: int, caption: str) -> tuple[Figure, list[list[Any]]]:
    """A figure of ``rows`` (heights in inches) x ``cols`` panels over its caption."""
    wrapped = textwrap.fill(caption, width=int(WIDTH_IN * 14))
    caption_height = 0.2 + 0.16 * (wrapped.count("\n") + 1)
    fig = Figure(figsize=(WIDTH_IN, sum(rows) + caption_height), layout="constrained")
    grid = fig.add_gridspec(len(rows) + 1, cols, height_ratios=[*rows, caption_height])
    axes = [[fig.add_subplot(grid[r, c]) for c in range(cols)] for r in range(len(rows))]
    caption_ax = fig.add_subplot(grid[len(rows), :])
    caption_ax.set_axis_off()
    caption_ax.text(
        0, 1, wrapped, va="top", ha="left", fontsize=8.5, transform=caption_ax.transAxes
    )
    return fig, axes


def _save(fig: Figure, path: Path) -> Path:
    write_with_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    return path

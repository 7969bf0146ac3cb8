"""PNG plots of a run: learning curves, and EMA vs exact BatchNorm statistics per layer.

Uses matplotlib's object API (``Figure``) rather than pyplot: no global state
and no GUI backend, so it works headless and under torchrun.
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure
from torch import Tensor

from training.atomic import write_with_atomic


def _save(fig: Figure, path: Path) -> Path:
    write_with_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    return path


def plot_curves(history: list[dict[str, float]], path: str | os.PathLike[str]) -> Path:
    """Loss and accuracy per epoch, training (with BN batch statistics) vs validation."""
    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for key, label in (("train_loss", "train"), ("val_loss", "validation (EMA stats)")):
        loss_ax.plot(epochs, [row[key] for row in history], label=label)
    for key, label in (("train_acc", "train"), ("val_acc", "validation (EMA stats)")):
        acc_ax.plot(epochs, [100 * row[key] for row in history], label=label)
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, Path(path))


def plot_bn_stats(
    ema: dict[str, tuple[Tensor, Tensor]],
    exact: dict[str, tuple[Tensor, Tensor]],
    out_dir: str | os.PathLike[str],
) -> list[Path]:
    """One PNG per BN layer: running (EMA) mean and variance against the exact ones.

    Each channel is a point; on the diagonal the EMA matched the whole-training-set value.
    """
    paths = []
    for index, (name, (ema_mean, ema_var)) in enumerate(ema.items()):
        exact_mean, exact_var = exact[name]
        fig = Figure(figsize=(10, 4.5), layout="constrained")
        fig.suptitle(f"BN layer {index} ({name}): running EMA vs exact training-set statistics")
        for ax, what, e, x in zip(
            fig.subplots(1, 2),
            ("mean", "variance"),
            (ema_mean, ema_var),
            (exact_mean, exact_var),
            strict=True,
        ):
            e_np, x_np = e.double().numpy(), x.double().numpy()
            low, high = min(e_np.min(), x_np.min()), max(e_np.max(), x_np.max())
            ax.plot([low, high], [low, high], color="grey", linewidth=1, label="EMA = exact")
            ax.scatter(x_np, e_np, s=12, label=f"{len(e_np)} channels")
            worst = float(abs(e_np - x_np).max())
            ax.set(xlabel=f"exact {what}", ylabel=f"running (EMA) {what}")
            ax.set_title(f"{what}: max |EMA - exact| = {worst:.3g}")
            ax.grid(alpha=0.3)
            ax.legend()
        paths.append(_save(fig, Path(out_dir) / f"bn_{index}_{name.replace('.', '_')}.png"))
    return paths

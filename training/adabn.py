"""AdaBN: a trained network's input standardization and BatchNorm statistics, recomputed on
unlabelled target-domain data with the trained weights.

Li et al., "Revisiting Batch Normalization for Practical Domain Adaptation"
(2016): a BN network's weights carry what it learned, its BN statistics the
domain it was trained on; replacing every BN layer's mean and variance by those
of the target domain adapts it without labels or training. Here the input
standardization (per feature, or per channel for images) is the first such
normalization and is recomputed too (``Standardization.fit``, as training fits
it), then every BN layer's exact statistics, layer by layer in forward order
(``training.stats.recompute_exact_bn_stats``): layer ``l`` is measured on what
layers ``< l`` produce with their recomputed statistics, the network the
service will run. The weights, the encoding (features, categories, fill values,
image decoding) and the labels stay the trained model's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from training.checkpoint import Checkpoint
from training.data import Standardization
from training.stats import bn_buffers, recompute_exact_bn_stats

STATS_BATCH = 512  # samples per forward pass (the statistics do not depend on it)


@dataclass(frozen=True)
class LayerChange:
    """How far one normalization's statistics moved, averaged over its channels.

    ``shift``: |new mean - old mean| in units of the old standard deviation;
    ``scale``: new standard deviation / old one.
    """

    name: str
    channels: int
    mean_shift: float
    max_shift: float
    mean_scale: float


def adabn(ckpt: Checkpoint, x: np.ndarray) -> tuple[Checkpoint, list[LayerChange]]:
    """``ckpt`` with its standardization and BN statistics recomputed on the raw target
    samples ``x`` (``stats_mode`` becomes ``exact``), and how far each moved.

    Metrics and provenance are the caller's to set on the result.
    """
    standardization = Standardization.fit(x)
    net = ckpt.build()
    before = bn_buffers(net)
    z = torch.from_numpy(standardization.apply(x))
    after = recompute_exact_bn_stats(net, z, batch_size=STATS_BATCH)
    eps = {name: float(bn.eps) for name, bn in net.batch_norms()}
    changes = [
        change(
            "input",
            ckpt.standardization.mean,
            ckpt.standardization.std**2,
            standardization.mean,
            standardization.std**2,
        )
    ]
    for name, (mean, var) in after.items():
        old_mean, old_var = before[name]
        changes.append(
            change(
                name,
                old_mean.double().numpy(),
                old_var.double().numpy() + eps[name],
                mean.numpy(),
                var.numpy() + eps[name],
            )
        )
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    adapted = replace(ckpt, state_dict=state, standardization=standardization, stats_mode="exact")
    return adapted, changes


def change(
    name: str, old_mean: np.ndarray, old_var: np.ndarray, mean: np.ndarray, var: np.ndarray
) -> LayerChange:
    """The ``LayerChange`` between two sets of per-channel moments (variances > 0)."""
    shift = np.abs(mean - old_mean) / np.sqrt(old_var)
    return LayerChange(
        name=name,
        channels=len(mean),
        mean_shift=float(shift.mean()),
        max_shift=float(shift.max()),
        mean_scale=float(np.sqrt(var / old_var).mean()),
    )

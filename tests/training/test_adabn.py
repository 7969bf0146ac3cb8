"""AdaBN (training/adabn.py) against a float64 oracle: the unfolded network whose input
standardization and BN statistics are recomputed on the whole target set in one batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from adabn_oracle import oracle_logits
from training_checkpoints import make_checkpoint

from training.adabn import adabn
from training.checkpoint import load_checkpoint
from training.data import load_splits
from training.reference import reference_model, reference_outputs


def shifted(x: np.ndarray) -> np.ndarray:
    """A covariate shift that is not a per-channel affine map (which standardization undoes)."""
    rng = np.random.default_rng(0)
    return (0.6 * x + 0.05 * x**2 / (np.abs(x).max() + 1) + rng.normal(0, 0.3, x.shape)).astype(
        np.float32
    )


@pytest.mark.parametrize(
    ("dataset", "kind", "widths", "bn_position"),
    [
        ("wine", "mlp", (16, 8), "before"),
        ("breast_cancer", "mlp", (12,), "after"),
        ("digits", "cnn", (4, 6), "before"),
        ("digits", "cnn", (5,), "after"),
    ],
)
def test_adabn_matches_the_float64_oracle(
    tmp_path: Path, dataset: str, kind: str, widths: tuple[int, ...], bn_position: str
) -> None:
    ckpt = load_checkpoint(
        make_checkpoint(tmp_path / "c.pt", dataset, kind, widths, bn_position=bn_position)
    )
    splits = load_splits(ckpt.data_spec)
    target, test = shifted(splits.train.X), shifted(splits.test.X)

    adapted, changes = adabn(ckpt, target)

    want = oracle_logits(ckpt, target, test)
    got, _ = reference_outputs(reference_model(adapted), test)
    before, _ = reference_outputs(reference_model(ckpt), test)
    assert np.max(np.abs(want - before)) > 0.1  # recalibration changes the model ...
    # ... exactly as AdaBN says (float32 statistics: ~3e-7 measured)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    axes = (0,) if target.ndim == 2 else (0, 2, 3)
    np.testing.assert_allclose(adapted.standardization.mean, target.astype(float).mean(axis=axes))
    assert adapted.stats_mode == "exact"
    assert [c.name for c in changes] == ["input", *(n for n, _ in ckpt.build().batch_norms())]
    # Only the BN statistics (and their batch counters) change; every weight stays.
    for name, tensor in ckpt.state_dict.items():
        if not name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            torch.testing.assert_close(adapted.state_dict[name], tensor, rtol=0, atol=0)


def test_adabn_undoes_an_affine_intensity_change_exactly(tmp_path: Path) -> None:
    """x -> 0.5 x + 3 (per channel) is undone by the recomputed standardization alone, so the
    recalibrated model on shifted data answers as the original one on clean data."""
    ckpt = load_checkpoint(make_checkpoint(tmp_path / "c.pt", "digits", "cnn", (4, 6)))
    splits = load_splits(ckpt.data_spec)
    adapted, changes = adabn(ckpt, 0.5 * splits.train.X + 3)
    clean = adabn(ckpt, splits.train.X)[0]
    got, _ = reference_outputs(reference_model(adapted), 0.5 * splits.test.X + 3)
    want, _ = reference_outputs(reference_model(clean), splits.test.X)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert changes[0].mean_scale == pytest.approx(0.5, rel=1e-6)  # train split: its own std

"""The training loop (training/train.py) on tiny runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training import train as train_module
from training.config import ModelConfig, TrainConfig
from training.data import Splits, load_splits, make_data_spec
from training.distributed import DistEnv
from training.errors import UsageError
from training.stats import recompute_exact_bn_stats
from training.train import (
    AllShifts,
    check_batch_size,
    evaluate,
    fit,
    resolve_device,
    shift_images,
)


@pytest.fixture(scope="module")
def cancer() -> Splits:
    return load_splits(make_data_spec("breast_cancer"))


def mlp(splits: Splits, **overrides: object) -> ModelConfig:
    values: dict = {
        "kind": "mlp",
        "in_shape": splits.sample_shape,
        "num_classes": 2,
        "widths": (16,),
    }
    return ModelConfig(**{**values, **overrides})


def test_shift_images_matches_a_direct_translation() -> None:
    x = torch.arange(2 * 1 * 4 * 5, dtype=torch.float32).reshape(2, 1, 4, 5)
    offsets = torch.tensor([[1, 1], [0, 2]])  # sample 0 unchanged; sample 1: up 1 row, right 1 col
    out = shift_images(x, offsets, max_shift=1)
    torch.testing.assert_close(out[0], x[0])
    img = x[1, 0].numpy()
    padded = np.pad(img, 1, mode="edge")
    expected = padded[0:4, 2:7]  # offset (0, 2) in the padded image
    np.testing.assert_array_equal(out[1, 0].numpy(), expected)
    assert out[1, 0, 1, 0] == x[1, 0, 0, 1]  # content moved down one row and left one column
    assert out.stride() == (20, 20, 5, 1)  # plain NCHW, not an ambiguous channels-last view


def test_all_shifts_enumerates_every_offset_once() -> None:
    x = torch.randn(5, 2, 6, 6)
    batches = list(AllShifts(x, max_shift=1, batch_size=3))
    assert len(batches) == 2 * 9  # 2 chunks of the data x 9 offsets
    seen = torch.cat(batches)
    assert seen.shape == (45, 2, 6, 6)
    for row in range(3):
        for col in range(3):
            shifted = shift_images(x, torch.tensor([[row, col]] * 5), 1)
            for image in shifted:
                assert any(torch.equal(image, s) for s in seen)
    assert list(AllShifts(x, 1, 3))[4].shape == batches[4].shape  # re-iterable


def test_fit_learns_breast_cancer_and_measures_both_statistics(cancer: Splits) -> None:
    result = fit(cancer, mlp(cancer), TrainConfig(epochs=10, seed=0))
    assert result is not None
    m = result.metrics
    for split in ("train", "val", "test"):
        for mode in ("ema", "exact"):
            assert 0.0 <= m[f"{split}_acc_{mode}"] <= 1.0
    assert m["val_acc_exact"] > 0.9 and m["test_acc_exact"] > 0.9
    assert [row["epoch"] for row in result.history] == list(range(1, 11))
    assert result.stats_mode == "exact"
    # The model holds the exact statistics and reproduces the exact accuracy.
    bn = result.model.layers[1]
    torch.testing.assert_close(bn.running_mean, result.bn_stats["exact"]["layers.1"][0])
    x = torch.as_tensor(result.standardization.apply(cancer.test.X))
    _, acc = evaluate(result.model, x, torch.as_tensor(cancer.test.y))
    assert acc == pytest.approx(m["test_acc_exact"])


def test_fit_is_reproducible_and_keeps_ema_when_asked(cancer: Splits) -> None:
    cfg = TrainConfig(epochs=2, seed=3, stats="ema")
    a = fit(cancer, mlp(cancer), cfg)
    b = fit(cancer, mlp(cancer), cfg)
    assert a is not None and b is not None
    assert a.history == [
        {**row, "time_s": a.history[i]["time_s"]} for i, row in enumerate(b.history)
    ]
    for key, value in a.model.state_dict().items():
        torch.testing.assert_close(value, b.model.state_dict()[key])
    torch.testing.assert_close(a.model.layers[1].running_var, a.bn_stats["ema"]["layers.1"][1])


def test_early_stopping_keeps_the_best_epoch(
    cancer: Splits, monkeypatch: pytest.MonkeyPatch
) -> None:
    scores = iter([(0.5, 0.6), (0.3, 0.9), (0.4, 0.8), (0.35, 0.9), (0.1, 0.85)])
    real_evaluate = train_module.evaluate
    calls = {"n": 0}

    def fake_evaluate(model, x, y, batch_size=1024):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return next(scores) if calls["n"] <= 5 else real_evaluate(model, x, y, batch_size)

    monkeypatch.setattr(train_module, "evaluate", fake_evaluate)
    cfg = TrainConfig(epochs=20, patience=3, seed=0)
    result = fit(cancer, mlp(cancer), cfg)
    assert result is not None
    # Epoch 2 is best: epoch 4 ties its accuracy with a higher loss, epoch 5 has a lower accuracy.
    assert len(result.history) == 5
    assert result.metrics["best_epoch"] == 2


def test_batch_size_checks() -> None:
    check_batch_size(100, TrainConfig(batch_size=64), DistEnv())
    with pytest.raises(UsageError, match="fewer than --batch-size 64"):
        check_batch_size(50, TrainConfig(batch_size=64), DistEnv())
    with pytest.raises(UsageError, match="at least 2 samples"):
        check_batch_size(100, TrainConfig(batch_size=6), DistEnv(world_size=4))
    with pytest.raises(UsageError, match=r"--batch-size must be >= 2 \(BatchNorm"):
        TrainConfig(batch_size=1).validate()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", 0, "--epochs"),
        ("lr", -1.0, "--lr"),
        ("optimizer", "lbfgs", "--optimizer"),
        ("stats", "median", "--stats"),
        ("momentum", 1.0, "--momentum"),
        ("augment_shift", -1, "--augment-shift"),
        ("patience", -2, "--patience"),
    ],
)
def test_invalid_train_config(field: str, value: object, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        TrainConfig(**{field: value}).validate()


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA"):
            resolve_device("cuda")


def test_train_config_round_trip() -> None:
    cfg = TrainConfig(epochs=3, optimizer="sgd", sync_bn=True)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_exact_statistics_of_shifted_images_cover_every_shift(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "images.npz"
    np.savez(path, X=rng.uniform(0, 16, size=(60, 6, 6)), y=np.arange(60) % 3)
    splits = load_splits(make_data_spec(str(path)))
    config = ModelConfig("cnn", splits.sample_shape, 3, (4, 4))
    results = {}
    for inputs in ("augmented", "plain"):
        cfg = TrainConfig(epochs=1, batch_size=8, augment_shift=1, exact_inputs=inputs)
        results[inputs] = fit(splits, config, cfg)
    plain, augmented = results["plain"], results["augmented"]
    assert plain is not None and augmented is not None
    torch.testing.assert_close(plain.model.state_dict()["layers.0.weight"],
                               augmented.model.state_dict()["layers.0.weight"])  # fmt: skip
    x = torch.as_tensor(plain.standardization.apply(splits.train.X))
    model = plain.model
    recompute_exact_bn_stats(model, x)
    torch.testing.assert_close(model.layers[1].running_var, plain.bn_stats["exact"]["layers.1"][1])
    recompute_exact_bn_stats(model, AllShifts(x, 1, 16))
    torch.testing.assert_close(
        model.layers[1].running_var, augmented.bn_stats["exact"]["layers.1"][1]
    )
    assert not torch.allclose(
        plain.bn_stats["exact"]["layers.1"][1], augmented.bn_stats["exact"]["layers.1"][1]
    )

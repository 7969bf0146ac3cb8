"""Checkpoint save/load (training/checkpoint.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training import checkpoint as checkpoint_module
from training.checkpoint import Checkpoint, library_versions, load_checkpoint, save_checkpoint
from training.config import ModelConfig
from training.data import Standardization
from training.errors import UsageError
from training.models import build_model


def make_checkpoint() -> Checkpoint:
    config = ModelConfig("mlp", (3,), 2, (4,))
    torch.manual_seed(0)
    model = build_model(config)
    return Checkpoint(
        model_config=config,
        state_dict=model.state_dict(),
        standardization=Standardization(np.array([1.0, 2.0, 3.0]), np.array([0.5, 1.0, 2.0])),
        input={
            "kind": "tabular",
            "sample_shape": [3],
            "feature_names": ["a", "b", "c"],
            "description": "three numbers",
        },
        labels=["no", "yes"],
        stats_mode="exact",
        metrics={"test_acc_exact": 0.9, "test_acc_ema": 0.8},
        train_config={"epochs": 1},
        data_spec={"name": "toy", "source": "sklearn"},
        versions=library_versions(),
    )


def test_round_trip(tmp_path: Path) -> None:
    ckpt = make_checkpoint()
    path = tmp_path / "run" / "checkpoint.pt"
    save_checkpoint(path, ckpt)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "bnfold-checkpoint" and raw["version"] == 1
    assert isinstance(raw["model_config"], dict) and isinstance(raw["standardization"], dict)
    loaded = load_checkpoint(path)
    assert loaded.model_config == ckpt.model_config
    assert loaded.labels == ckpt.labels and loaded.input == ckpt.input
    assert loaded.metrics == ckpt.metrics and loaded.stats_mode == "exact"
    np.testing.assert_array_equal(loaded.standardization.std, [0.5, 1.0, 2.0])
    x = torch.randn(5, 3)
    original = build_model(ckpt.model_config)
    original.load_state_dict(ckpt.state_dict)
    torch.testing.assert_close(loaded.build()(x), original.eval()(x))
    assert "torch" in loaded.versions


def test_failed_write_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, make_checkpoint())
    before = path.read_bytes()

    def crash(obj: object, target: object) -> None:
        Path(str(target)).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, make_checkpoint())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp file left


def test_bad_files_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(UsageError, match="not a readable checkpoint"):
        load_checkpoint(corrupt)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(UsageError, match="not a bnfold checkpoint"):
        load_checkpoint(other)
    future = tmp_path / "future.pt"
    torch.save({"format": "bnfold-checkpoint", "version": 99}, future)
    with pytest.raises(UsageError, match="unsupported checkpoint version 99"):
        load_checkpoint(future)


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "bnfold-checkpoint", "payload": Path("x")}, path)
    with pytest.raises(UsageError, match="not a readable checkpoint"):
        load_checkpoint(path)


@settings(max_examples=40, deadline=None)
@given(blob=st.binary(max_size=300))
def test_any_bytes_are_a_usage_error_not_a_crash(blob: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "random.pt"
        path.write_bytes(blob)
        with pytest.raises(UsageError):
            load_checkpoint(path)


def test_a_text_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(UsageError, match="not a readable checkpoint"):
        load_checkpoint(path)

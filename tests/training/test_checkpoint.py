"""Checkpoint save/load (training/checkpoint.py)."""

from __future__ import annotations

import dataclasses
import re
import tempfile
import zipfile
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


def _with_truncated_pickle(source: Path, target: Path, keep: int) -> Path:
    """A copy of a real checkpoint whose data.pkl is cut after ``keep`` bytes."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            zout.writestr(name, data[:keep] if name.endswith("data.pkl") else data)
    return target


INTERNALS = ("miniz", "weights_only", "Weights only", "unpack", "index out of range", "pop from")


@pytest.mark.parametrize("keep", [1, 35, 86, 341])
def test_a_damaged_checkpoint_is_explained_without_torch_internals(
    tmp_path: Path, keep: int
) -> None:
    good = tmp_path / "good.pt"
    save_checkpoint(good, make_checkpoint())
    bad = _with_truncated_pickle(good, tmp_path / "bad.pt", keep)
    with pytest.raises(UsageError) as exc:
        load_checkpoint(bad)
    message = str(exc.value)
    assert "bad.pt: not a readable checkpoint (a PyTorch file that is damaged" in message
    assert not any(word in message for word in INTERNALS), message


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "the file is empty"), (b"PK\x03\x04 cut short", "not a PyTorch checkpoint")],
)
def test_unreadable_bytes_are_named(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=reason):
        load_checkpoint(path)
    half = tmp_path / "half.pt"
    save_checkpoint(half, make_checkpoint())
    half.write_bytes(half.read_bytes()[:300])
    with pytest.raises(UsageError, match="truncated or another format") as exc:
        load_checkpoint(half)
    assert not any(word in str(exc.value) for word in INTERNALS)


def test_weights_that_do_not_fit_the_config_are_named(tmp_path: Path) -> None:
    ckpt = make_checkpoint()
    weights = dict(ckpt.state_dict)
    weights["layers.0.weight"] = torch.zeros(8, 3)
    del weights["layers.1.bias"]
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, dataclasses.replace(ckpt, state_dict=weights))
    with pytest.raises(UsageError) as exc:
        load_checkpoint(path)
    assert str(exc.value) == (
        f"{path}: malformed checkpoint: its weights do not fit its model config: "
        "no layers.1.bias, layers.0.weight of shape [8, 3] where the config needs [4, 3]"
    )


def test_the_input_encoding_round_trips_and_is_checked(tmp_path: Path) -> None:
    tabular = {
        "features": [
            {"name": "a", "type": "numeric", "fill": 1.5},
            {"name": "b", "type": "categorical", "categories": ["x", "y"], "fill": "y"},
        ],
        "missing": "mean",
    }
    ckpt = dataclasses.replace(
        make_checkpoint(), input={**make_checkpoint().input, "tabular": tabular}
    )
    path = tmp_path / "c.pt"
    save_checkpoint(path, ckpt)
    assert load_checkpoint(path).input["tabular"] == tabular
    for bad, message in [
        ({**tabular, "missing": "guess"}, "its input encoding is not valid"),
        ({**tabular, "features": tabular["features"][:1]}, "makes 1 columns, not [3]"),
    ]:
        save_checkpoint(path, dataclasses.replace(ckpt, input={**ckpt.input, "tabular": bad}))
        with pytest.raises(UsageError, match=re.escape(message)):
            load_checkpoint(path)
    files = {"mode": "RGB", "resize": None, "scale": 1 / 255, "max_pixels": 64}
    save_checkpoint(path, dataclasses.replace(ckpt, input={**ckpt.input, "image_files": files}))
    with pytest.raises(UsageError, match=re.escape("mode RGB do not make samples of [3]")):
        load_checkpoint(path)

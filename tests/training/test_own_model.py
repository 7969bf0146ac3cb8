"""``training.export_model``: a user's tabular MLP and small CNNs, folded, carded, served."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from own_nets import TabularMLP, randomise
from torch import nn

from bnfold import digest
from bnfold.onnxwire import count_ops
from service.app import create_app
from service.runtime import ModelRuntime
from service.settings import Settings
from training import export_model
from training.errors import UsageError
from training.module_data import SampleSet
from training.onnx_graph import ort_session

FEATURES = [f"feature {i}" for i in range(13)]
LABELS = ["setosa", "versicolor", "virginica"]


def tabular_data(n: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Raw features far from standardized (mean 50, spread 10), labels, and their statistics."""
    rng = np.random.default_rng(0)
    mean, std = rng.uniform(20, 80, 13), rng.uniform(2, 20, 13)
    x = (mean + std * rng.standard_normal((n, 13))).astype(np.float32)
    return x, np.arange(n) % 3, mean, std


def oracle(model: nn.Module, x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        z = (torch.from_numpy(x).double() - torch.from_numpy(mean)) / torch.from_numpy(std)
        return torch.softmax(net(z), dim=1).numpy()


@pytest.fixture(scope="module")
def tabular(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module, np.ndarray]:
    torch.manual_seed(0)
    model = randomise(TabularMLP())
    x, y, mean, std = tabular_data()
    out = tmp_path_factory.mktemp("tab")
    result = export_model(
        model,
        x[:8],
        out,
        labels=LABELS,
        feature_names=FEATURES,
        standardization=(mean, std),
        data=(x, np.asarray(LABELS)[y]),  # labels given by name
        name="My MLP",
    )
    assert result.passed
    assert result.standardization is not None and result.standardization.folded_into == "net.0"
    return result.path, model, x


def test_tabular_module_folds_exports_and_matches_the_oracle(
    tabular: tuple[Path, nn.Module, np.ndarray],
) -> None:
    path, model, x = tabular
    data = path.read_bytes()
    card = digest.check(data)
    assert card.name == "my-mlp"
    assert card.input.kind == "tabular" and card.input.columns == FEATURES
    assert card.fold.folded == card.fold.bn_total == 2 and card.bn_nodes == 0
    assert count_ops(data, "BatchNormalization") == 0
    assert card.stats_mode == "unknown"
    assert card.data is not None and card.data.source == "module"
    assert card.data.class_counts == [20, 20, 20]
    assert "data_acc" in card.metrics
    assert {p.name for p in path.parent.iterdir()} >= {"model.onnx", "card.json", "verify.json"}

    _, _, mean, std = tabular_data()
    want = oracle(model, x, mean, std)
    got = ort_session(str(path)).run(["probabilities"], {"input": x})[0]
    assert np.max(np.abs(got - want)) <= 1e-5


def test_tabular_module_is_served_by_feature_name(
    tabular: tuple[Path, nn.Module, np.ndarray],
) -> None:
    path, _, x = tabular
    session = ort_session(str(path))
    with TestClient(create_app(Settings(model_path=path))) as client:  # type: ignore[call-arg]
        for row in x[:4]:
            want = session.run(["probabilities"], {"input": row[None]})[0][0]
            body = {"features": dict(zip(FEATURES, row.tolist(), strict=True))}
            answer = client.post("/predict", json=body).json()
            got = np.asarray([answer["probabilities"][label] for label in LABELS], np.float32)
            np.testing.assert_array_equal(got, want)
            assert answer["label"] == LABELS[int(want.argmax())]
    np.testing.assert_array_equal(
        ModelRuntime.load(path).run(x[:4])[1],
        np.concatenate([session.run(["probabilities"], {"input": r[None]})[0] for r in x[:4]]),
    )


def test_the_users_module_is_not_changed(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = randomise(TabularMLP()).train()  # left in training mode on purpose
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, _, mean, std = tabular_data(20)
    export_model(model, x, tmp_path, labels=LABELS, standardization=(mean, std))
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_float64_module_exports_float32(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = randomise(TabularMLP()).double()
    x, _, _, _ = tabular_data(20)
    x = (x - x.mean(0)) / x.std(0)
    result = export_model(model, x, tmp_path, labels=LABELS)
    assert result.passed
    assert result.export.card.input.dtype == "float32"


class GrayCNN(nn.Module):
    """1-channel images, flattened into a Linear: the standardization folds through Flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, 16, bias=False)
        self.bn = nn.BatchNorm1d(16)
        self.out = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.bn(self.fc(self.flatten(x)))))


def test_grayscale_images_decode_as_l_and_fold_through_flatten(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = randomise(GrayCNN())
    x = np.random.default_rng(0).integers(0, 256, (30, 1, 8, 8)).astype(np.float32)
    result = export_model(
        model,
        x,
        tmp_path,
        labels=["a", "b", "c", "d"],
        standardization=([127.0], [64.0]),
        pixel_scale=1.0,
        resize=None,
    )
    assert result.passed
    image = result.export.card.input.image
    assert image is not None and image.files is not None
    assert (image.files.mode, image.files.scale, image.files.resize) == ("L", 1.0, None)
    assert result.standardization is not None and result.standardization.folded_into == "fc"
    want = oracle(model, x, np.full((1, 1, 1), 127.0), np.full((1, 1, 1), 64.0))
    got = ort_session(str(result.path)).run(["probabilities"], {"input": x})[0]
    assert np.max(np.abs(got - want)) <= 1e-5


def test_images_of_other_channel_counts_take_tensors_only(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2)
    )
    x = np.random.default_rng(0).random((10, 2, 6, 6)).astype(np.float32)
    result = export_model(randomise(model), x, tmp_path, labels=["no", "yes"])
    assert result.passed
    image = result.export.card.input.image
    assert image is not None and image.files is None
    assert result.export.card.golden[0].note.startswith("examples[")


def test_sample_set_names_the_data(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x, y, mean, std = tabular_data(12)
    data = SampleSet(x, y, "holdout.npz", sha256="ab" * 32)
    result = export_model(
        randomise(TabularMLP()),
        x[:4],
        tmp_path,
        labels=LABELS,
        data=data,
        standardization=(mean, std),
    )
    card = result.export.card
    assert card.data is not None and card.data.name == "holdout.npz"
    assert card.data.sha256 == "ab" * 32
    assert card.golden[0].note.startswith("holdout.npz[")
    assert result.samples == "12 of 12 (holdout.npz)"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": "abc"}, "not one string"),
        ({"labels": ["a"]}, "at least 2 labels"),
        ({"labels": ["a", "b", "c"], "kind": "image"}, "kind 'image'"),
        ({"labels": ["a", "b", "c"], "standardization": (1.0,)}, "pair"),
        ({"labels": ["a", "b", "c"], "standardization": ([0.0] * 3, [1.0] * 3)}, "13 features"),
        ({"labels": ["a", "b", "c"], "feature_names": ["x"] * 13}, "unique"),
        ({"labels": ["a", "b", "c"], "data": np.zeros((5, 12))}, "[12]"),
        ({"labels": ["a", "b", "c"], "data": (np.zeros((5, 13)), np.arange(4))}, "y has shape"),
    ],
)
def test_bad_arguments_are_usage_errors(
    kwargs: dict[str, object], message: str, tmp_path: Path
) -> None:
    x, _, _, _ = tabular_data(10)
    with pytest.raises(UsageError, match=message.replace("[", r"\[")):
        export_model(TabularMLP(), x, tmp_path / "out", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_import_training_does_not_import_torch() -> None:
    code = "import sys, training; print('torch' in sys.modules, training.__all__)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False ['export_model']"

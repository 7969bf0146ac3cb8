"""``python -m training export-module``: a user's ResNet-style module, folded, verified, served.

The oracle here is the test's own: the module written in ``own_nets.py``, loaded
with the saved weights, standardized and run in float64 by this file.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from fastapi.testclient import TestClient
from own_nets import ResNetStyle, bn_count, randomise

from bnfold import digest
from bnfold.onnxwire import count_ops
from service.app import create_app
from service.runtime import ModelRuntime
from service.settings import Settings
from training.cli import main
from training.onnx_graph import ort_session

NETS = Path(__file__).resolve().parents[1] / "own_nets.py"
MEAN = [0.485, 0.456, 0.406]  # torchvision's ImageNet Normalize constants
STD = [0.229, 0.224, 0.225]
LABELS = [f"class-{i}" for i in range(10)]
SAMPLES = 48


def oracle_probabilities(model: torch.nn.Module, x: np.ndarray, standardize: bool) -> np.ndarray:
    """Softmax of the UNFOLDED module in float64 on raw ``x`` (this test's own arithmetic)."""
    net = copy.deepcopy(model).double().eval()
    inputs = torch.from_numpy(x).double()
    if standardize:
        mean = torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)
        std = torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1)
        inputs = (inputs - mean) / std
    with torch.no_grad():
        return torch.softmax(net(inputs), dim=1).numpy()


def ort_alone(path: Path, x: np.ndarray) -> np.ndarray:
    """In-process ONNX Runtime probabilities, one sample per run."""
    session = ort_session(str(path))
    return np.concatenate(
        [session.run(["probabilities"], {"input": x[i : i + 1]})[0] for i in range(len(x))]
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Weights of the randomised ResNet-style module and a calibration .npz of pixels / 255."""
    root = tmp_path_factory.mktemp("own")
    torch.manual_seed(0)
    model = randomise(ResNetStyle(), seed=1)
    torch.save(model.state_dict(), root / "weights.pt")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(SAMPLES, 3, 32, 32))
    np.savez(root / "calib.npz", X=(pixels / 255).astype(np.float32), y=np.arange(SAMPLES) % 10)
    (root / "labels.txt").write_text("\n".join(LABELS) + "\n")
    return {"root": root, "weights": root / "weights.pt", "data": root / "calib.npz"}


def export_args(inputs: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "export-module",
        f"{NETS}:ResNetStyle",
        "--weights",
        str(inputs["weights"]),
        "--input-shape",
        "3,32,32",
        "--labels",
        str(inputs["root"] / "labels.txt"),
        "--data",
        str(inputs["data"]),
        "--out",
        str(out),
        *extra,
    ]


STANDARDIZE = ["--mean", ",".join(map(str, MEAN)), "--std", ",".join(map(str, STD))]


@pytest.fixture(scope="module")
def exported(inputs: dict[str, Path]) -> Path:
    out = inputs["root"] / "run"
    assert main(export_args(inputs, out, *STANDARDIZE)) == 0
    return out


def loaded_module(inputs: dict[str, Path]) -> torch.nn.Module:
    model = ResNetStyle()
    model.load_state_dict(torch.load(inputs["weights"], weights_only=True))
    return model.eval()


def test_every_bn_folded_and_parity_with_the_unfolded_module(
    exported: Path, inputs: dict[str, Path]
) -> None:
    data = (exported / "model.onnx").read_bytes()
    card = digest.check(data)
    expected_bn = bn_count(ResNetStyle())
    assert expected_bn == 9  # stem, 2 + 2 in the blocks, the 1x1 downsample, 2 depthwise, head
    assert card.fold.bn_total == expected_bn == card.fold.folded
    assert card.fold.refused == 0
    assert count_ops(data, "BatchNormalization") == 0 == card.bn_nodes
    assert card.stats_mode == "unknown"
    assert card.data is not None and card.data.source == "module"
    assert card.labels == LABELS
    files = card.input.image.files if card.input.image else None
    assert files is not None and files.mode == "RGB" and files.scale == pytest.approx(1 / 255)
    # The stem zero-pads: the standardization stays an explicit per-channel affine.
    assert "explicit per-channel affine" in card.input.description
    assert [n.op_type for n in onnx.load_from_string(data).graph.node[:2]] == ["Sub", "Div"]

    x = np.load(inputs["data"])["X"]
    want = oracle_probabilities(loaded_module(inputs), x, standardize=True)
    got = ort_alone(exported / "model.onnx", x)
    assert np.max(np.abs(got - want)) <= 1e-5
    assert (got.argmax(1) == want.argmax(1)).all()

    report = json.loads((exported / "verify.json").read_text())
    assert report["passed"] is True
    assert report["parity"]["samples"] == SAMPLES
    assert report["parity"]["max_abs_prob_diff"] <= 1e-5
    assert json.loads((exported / "card.json").read_text())["fold"]["folded"] == expected_bn


def test_served_answers_equal_in_process_onnx_runtime(
    exported: Path, inputs: dict[str, Path]
) -> None:
    path = exported / "model.onnx"
    x = np.load(inputs["data"])["X"][:6]
    want = ort_alone(path, x)
    runtime = ModelRuntime.load(path)
    assert runtime.checks["batch_normalization_nodes"] == 0
    np.testing.assert_array_equal(runtime.run(x)[1], want)

    with TestClient(create_app(Settings(model_path=path))) as client:  # type: ignore[call-arg]
        for i, sample in enumerate(x):
            answer = client.post("/predict", json={"image": sample.tolist()}).json()
            probs = np.asarray(list(answer["probabilities"].values()), dtype=np.float32)
            np.testing.assert_array_equal(probs, want[i])
            assert answer["label"] == LABELS[int(want[i].argmax())]
        card = runtime.card
        body = {
            "inputs": [
                {
                    "name": "input",
                    "shape": [len(x), 3, 32, 32],
                    "datatype": "FP32",
                    "data": x.ravel().tolist(),
                }
            ]
        }
        v2 = client.post(f"/v2/models/{card.name}/infer", json=body)
        assert v2.status_code == 200, v2.text
        out = next(o for o in v2.json()["outputs"] if o["name"] == "probabilities")
        np.testing.assert_array_equal(np.asarray(out["data"], np.float32).reshape(want.shape), want)


def test_standardization_folds_into_a_stem_without_padding(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    factory = tmp_path / "stem0.py"
    factory.write_text(
        f"import sys\nsys.path.insert(0, {str(NETS.parent)!r})\n"
        "from own_nets import ResNetStyle\n\n"
        "def build():\n    return ResNetStyle(stem_padding=0)\n"
    )
    torch.manual_seed(0)
    model = randomise(ResNetStyle(stem_padding=0), seed=2)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    args = export_args(inputs, tmp_path / "out", *STANDARDIZE)
    args[1], args[3] = f"{factory}:build", str(tmp_path / "w.pt")
    assert main(args) == 0
    data = (tmp_path / "out" / "model.onnx").read_bytes()
    card = digest.check(data)
    assert "folded into stem.0" in card.input.description
    assert onnx.load_from_string(data).graph.node[0].op_type == "Conv"
    assert card.fold.folded == card.fold.bn_total == 9
    x = np.load(inputs["data"])["X"]
    got = ort_alone(tmp_path / "out" / "model.onnx", x)
    assert np.max(np.abs(got - oracle_probabilities(model, x, standardize=True))) <= 1e-5


def test_verify_with_the_module(
    exported: Path, inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base = [
        "verify",
        str(exported / "model.onnx"),
        "--module",
        f"{NETS}:ResNetStyle",
        "--weights",
        str(inputs["weights"]),
        "--data",
        str(inputs["data"]),
    ]
    assert main([*base, *STANDARDIZE]) == 0
    assert json.loads((exported / "verify.json").read_text())["passed"] is True
    capsys.readouterr()
    # Without the export's standardization the oracle differs: verify says so, exit 1.
    assert main(base) == 1
    out = capsys.readouterr().out
    assert "NO" in out and "--mean/--std" in out
    assert main([*base, *STANDARDIZE]) == 0  # leave a passing verify.json for the other tests


def test_refused_fold_is_an_error_unless_allowed(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    factory = tmp_path / "padded.py"
    factory.write_text(
        f"import sys\nsys.path.insert(0, {str(NETS.parent)!r})\n"
        "from own_nets import ResNetStyle, randomise\n\n"
        "def build():\n    return randomise(ResNetStyle(padded_pointwise=True))\n"
    )
    args = [
        "export-module",
        f"{factory}:build",
        "--input-shape",
        "3,32,32",
        "--labels",
        ",".join(LABELS),
        "--out",
        str(tmp_path / "out"),
        "--verify-samples",
        "16",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "block.bn_after_relu" in err and "--allow-unfolded" in err
    assert not (tmp_path / "out" / "model.onnx").exists()

    assert main([*args, "--allow-unfolded"]) == 0
    data = (tmp_path / "out" / "model.onnx").read_bytes()
    card = digest.check(data)
    assert card.bn_nodes == 1 == count_ops(data, "BatchNormalization") == card.fold.refused
    assert card.fold.folded == bn_count(ResNetStyle()) - 1
    assert json.loads((tmp_path / "out" / "verify.json").read_text())["passed"] is True


def test_tabular_module_from_the_command_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    names = np.array([f"f{i}" for i in range(13)])
    x = (40 + 5 * rng.standard_normal((30, 13))).astype(np.float32)
    np.savez(tmp_path / "tab.npz", X=x, y=np.array(["a", "b", "c"] * 10), feature_names=names)
    args = [
        "export-module",
        f"{NETS}:mlp",
        "--input-shape",
        "13",
        "--labels",
        "a,b,c",
        "--data",
        str(tmp_path / "tab.npz"),
        "--mean",
        "40",
        "--std",
        "5",
        "--out",
        str(tmp_path / "out"),
    ]
    assert main(args) == 0
    card = digest.check((tmp_path / "out" / "model.onnx").read_bytes())
    assert card.input.columns == names.tolist()
    assert card.fold.folded == card.fold.bn_total == 2
    assert "folded into net.0" in card.input.description
    assert card.data is not None and card.data.class_counts == [10, 10, 10]
    assert json.loads((tmp_path / "out" / "verify.json").read_text())["passed"] is True

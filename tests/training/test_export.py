"""Export: a folded ONNX file with no BatchNormalization, a true card, and atomic writes."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from training_checkpoints import make_checkpoint

from bnfold import digest
from bnfold.card_markdown import card_markdown
from bnfold.onnxwire import count_ops
from training.data import load_splits
from training.errors import UsageError
from training.export import MODEL_FILE, export_checkpoint
from training.onnx_graph import ort_session, runtime_constant_nodes
from training.reference import reference_model, reference_outputs


@pytest.fixture(scope="module")
def wine_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("wine") / "ckpt.pt", "wine", "mlp", (16, 8))


@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("digits") / "ckpt.pt", "digits", "cnn", (8, 16))


@pytest.mark.parametrize("which", ["wine_ckpt", "digits_ckpt"])
def test_export_is_folded_true_to_its_card_and_to_the_oracle(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    ckpt_path: Path = request.getfixturevalue(which)
    result = export_checkpoint(ckpt_path, tmp_path)
    data = result.path.read_bytes()
    model = onnx.load_from_string(data)
    card = digest.check(data)

    assert count_ops(data, "BatchNormalization") == 0 == card.bn_nodes
    assert runtime_constant_nodes(model) == []
    assert card.fold.refused == 0 and card.fold.folded == card.fold.bn_total > 0
    assert card == result.card
    # The public outputs, then the drift monitor's internal one (listed in the card).
    assert card.monitor is not None
    assert [o.name for o in model.graph.output] == ["logits", "probabilities", card.monitor.output]
    assert model.opset_import[0].version >= 17
    onnx.checker.check_model(model, full_check=True)
    assert (tmp_path / "card.json").is_file()
    # The human card beside it renders the card sealed in the file (its digest included).
    assert (tmp_path / "card.md").read_text() == card_markdown(card)
    text = (tmp_path / "card.md").read_text()
    assert card.digest in text
    # The drift monitor's reference, as recorded in the card.
    assert card.monitor is not None
    assert f"{100 * card.monitor.false_alarm_rate:.1f} % false alarms" in text
    first = card.monitor.ranges[0]
    assert f"| {first.name} | {first.min:.4g} | {first.max:.4g} |" in text

    # The golden samples are the unfolded model's outputs, and ONNX Runtime reproduces them.
    session = ort_session(str(result.path))
    shape = card.input.sample_shape
    for golden in card.golden:
        x = np.asarray(golden.input, dtype=np.float32).reshape(1, *shape)
        got = session.run(["probabilities"], {"input": x})[0][0]
        np.testing.assert_allclose(got, golden.probabilities, atol=card.golden_tolerance)

    # The whole test split, raw features in: the same as the unfolded float64 model.
    from training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(ckpt_path)
    x = load_splits(ckpt.data_spec).test.X
    _, want = reference_outputs(reference_model(ckpt), x)
    got = session.run(["probabilities"], {"input": x})[0]
    assert np.max(np.abs(got - want)) <= 1e-5
    assert (got.argmax(1) == want.argmax(1)).all()


def test_card_describes_the_input(wine_ckpt: Path, tmp_path: Path) -> None:
    card = export_checkpoint(wine_ckpt, tmp_path, name="my-wine").card
    assert card.name == "my-wine"
    assert card.input.kind == "tabular"
    assert card.input.shape == [-1, 13]
    assert card.input.columns is not None and len(card.input.columns) == 13
    assert card.labels == ["class_0", "class_1", "class_2"]
    assert card.stats_mode == "exact"
    assert {"torch", "onnx", "onnxruntime"} <= card.versions.keys()
    assert "golden" not in card.public()


def test_bn_after_activation_is_folded_forward(tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "ckpt.pt", "wine", "mlp", (16, 8), bn_position="after")
    result = export_checkpoint(ckpt, tmp_path / "out")
    directions = {e["direction"] for e in result.card.fold.entries if e["status"] == "folded"}
    assert "forward" in directions
    assert result.card.bn_nodes == 0


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        export_checkpoint(tmp_path / "nope.pt", tmp_path)


def test_corrupt_checkpoint(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(UsageError, match="not a readable checkpoint"):
        export_checkpoint(bad, tmp_path)


def test_not_a_bnfold_checkpoint(tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(UsageError, match="not a bnfold checkpoint"):
        export_checkpoint(other, tmp_path)


def test_output_folder_not_writable(wine_ckpt: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(UsageError, match="cannot write in"):
        export_checkpoint(wine_ckpt, blocker / "out")


def test_opset_below_17_is_refused(wine_ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="opset"):
        export_checkpoint(wine_ckpt, tmp_path, opset=13)


def test_failed_export_leaves_the_previous_model(
    wine_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = export_checkpoint(wine_ckpt, tmp_path).path.read_bytes()

    def broken(model: onnx.ModelProto) -> onnx.ModelProto:
        raise RuntimeError("killed half way")

    monkeypatch.setattr("training.export.check_graph", broken)
    with pytest.raises(RuntimeError):
        export_checkpoint(wine_ckpt, tmp_path)
    assert (tmp_path / MODEL_FILE).read_bytes() == previous
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


class _OutputBN(torch.nn.Module):
    """Linear -> Tanh -> BatchNorm as the model output: no layer to fold the BN into."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(13, 3)
        self.bn = torch.nn.BatchNorm1d(3)
        self.bn.running_mean.uniform_(-0.5, 0.5)
        self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(torch.tanh(self.linear(x)))

    def input_layer(self) -> torch.nn.Linear:
        return self.linear


def test_unfoldable_bn_is_an_error_unless_allowed(
    wine_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    net = _OutputBN().eval()
    monkeypatch.setattr("training.checkpoint.Checkpoint.build", lambda self: copy.deepcopy(net))
    with pytest.raises(UsageError, match=r"cannot be folded.*--allow-unfolded"):
        export_checkpoint(wine_ckpt, tmp_path)
    assert not (tmp_path / MODEL_FILE).exists()

    result = export_checkpoint(wine_ckpt, tmp_path, allow_unfolded=True)
    assert result.card.bn_nodes == 1 == count_ops(result.path.read_bytes(), "BatchNormalization")
    assert result.card.fold.refused == 1


def test_card_carries_the_tabular_encoding_and_provenance(tmp_path: Path) -> None:
    from example_datasets import penguins_csv

    from bnfold.card import CategoricalFeature
    from training.checkpoint import load_checkpoint

    path = penguins_csv(tmp_path)
    ckpt_path = make_checkpoint(
        tmp_path / "c.pt", str(path), "mlp", (8,), label_column="species", missing="median"
    )
    card = export_checkpoint(ckpt_path, tmp_path / "out").card
    ckpt = load_checkpoint(ckpt_path)
    tabular = card.input.tabular
    assert tabular is not None and tabular.model_dump(mode="json") == ckpt.input["tabular"]
    assert tabular.missing == "median"
    island = tabular.features[0]
    assert isinstance(island, CategoricalFeature)
    assert island.categories == ["Biscoe", "Dream", "Torgersen"] and island.fill == "Biscoe"
    assert card.labels == ["Adelie", "Chinstrap", "Gentoo"]
    assert card.input.shape == [-1, 10]
    data = card.data
    assert data is not None and (data.source, data.name) == ("csv", "penguins")
    assert data.sha256 == ckpt.data_spec["sha256"] and sum(data.samples.values()) == 344
    assert data.class_counts is not None and sum(data.class_counts) == data.samples["train"]


def test_card_says_how_image_files_are_decoded(tmp_path: Path) -> None:
    from example_datasets import digits_folder

    root = digits_folder(tmp_path / "png", scale=2, limit=90)
    ckpt_path = make_checkpoint(tmp_path / "c.pt", str(root), "cnn", (4,))
    card = export_checkpoint(ckpt_path, tmp_path).card
    image = card.input.image
    assert image is not None and (image.channels, image.height, image.width) == (1, 16, 16)
    assert image.files is not None
    assert image.files.model_dump() == {
        "mode": "L", "resize": None, "scale": 1 / 255, "max_pixels": 256
    }  # fmt: skip
    assert card.data is not None and card.data.source == "images" and card.data.sha256


def test_an_export_removes_the_previous_models_verification(
    wine_ckpt: Path, tmp_path: Path
) -> None:
    (tmp_path / "verify.json").write_text('{"passed": true}')  # of an earlier model
    export_checkpoint(wine_ckpt, tmp_path)
    assert not (tmp_path / "verify.json").exists()
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "card.json").is_file()


@pytest.mark.slow
def test_kill_9_during_export_never_mixes_two_models(wine_ckpt: Path, tmp_path: Path) -> None:
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    export_checkpoint(wine_ckpt, out, name="first")
    command = [sys.executable, "-m", "training", "export", str(wine_ckpt), "--out", str(out)]
    for delay in (2.5, 3.5, 4.5):
        child = subprocess.Popen(
            [*command, "--name", f"n{int(delay * 10)}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        model_card = digest.check((out / "model.onnx").read_bytes())
        public = json.loads((out / "card.json").read_text())
        assert public["digest"] == model_card.digest, "model.onnx and card.json of two exports"
    export_checkpoint(wine_ckpt, out)  # the next export cleans up after the killed ones
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_feature_with_a_large_mean_keeps_float32_precision(tmp_path: Path) -> None:
    """A year-like column (mean ~2008, std ~0.8): folding its mean into a bias made float32
    cancel ~1e-4 at run time; subtracted in the graph, the export matches the oracle."""
    from training.checkpoint import load_checkpoint

    rng = np.random.default_rng(0)
    rows = ["year,size,label"]
    for i in range(300):
        year = 2007 + i % 3
        rows.append(f"{year},{rng.normal(i % 2, 1):.4f},{(i // 3) % 2}")
    path = tmp_path / "years.csv"
    path.write_text("\n".join(rows) + "\n")
    ckpt_path = make_checkpoint(tmp_path / "c.pt", str(path), "mlp", (32,), label_column="label")
    result = export_checkpoint(ckpt_path, tmp_path / "out")
    ckpt = load_checkpoint(ckpt_path)
    x = load_splits(ckpt.data_spec).train.X
    want, _ = reference_outputs(reference_model(ckpt), x)
    got = ort_session(str(result.path)).run(["logits"], {"input": x})[0]
    assert np.max(np.abs(got - want)) <= 2e-6 * max(1.0, float(np.max(np.abs(want))))

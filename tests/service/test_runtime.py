"""ModelRuntime: loading, every startup check, and running."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bnfold.card import ModelCard
from service.runtime import ModelLoadError, ModelRuntime


def test_loads_and_checks(model_dir: Path, tabular_card: ModelCard) -> None:
    runtime = ModelRuntime.load(model_dir / "tabular.onnx")
    assert runtime.name == "iris"
    assert runtime.version == tabular_card.digest[:12]
    assert runtime.sample_shape == (4,)
    assert runtime.checks["golden_samples"] == 3
    assert runtime.checks["golden_max_abs_delta"] <= tabular_card.golden_tolerance
    assert runtime.load_seconds > 0
    assert runtime.session.get_session_options().intra_op_num_threads == 1


def test_run_matches_the_golden_oracle(model_dir: Path, image_card: ModelCard) -> None:
    runtime = ModelRuntime.load(model_dir / "image.onnx")
    x = np.array([g.input for g in image_card.golden], np.float32).reshape(-1, 1, 8, 8)
    logits, probs = runtime.run(x)
    assert logits.shape == probs.shape == (3, 10)
    want = np.array([g.probabilities for g in image_card.golden])
    np.testing.assert_allclose(probs, want, atol=1e-6)
    np.testing.assert_allclose(logits, [g.logits for g in image_card.golden], atol=1e-4)


def test_batch_rows_equal_single_runs(model_dir: Path) -> None:
    runtime = ModelRuntime.load(model_dir / "image.onnx")
    x = np.random.default_rng(0).uniform(0, 16, (5, 1, 8, 8)).astype(np.float32)
    _, together = runtime.run(x)
    for i in range(5):
        assert np.array_equal(together[i], runtime.run(x[i : i + 1])[1][0])


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("hash_mismatch.onnx", "differs from the card"),
        ("batchnorm.onnx", "1 BatchNormalization node(s)"),
        ("wrong_golden.onnx", "does not reproduce"),
        ("no_card.onnx", "no 'bnfold.card' metadata"),
        ("corrupt.onnx", "is not an ONNX model"),
        ("missing.onnx", "cannot read model file"),
    ],
)
def test_refuses_models_that_disagree_with_their_card(
    model_dir: Path, name: str, reason: str
) -> None:
    with pytest.raises(ModelLoadError) as info:
        ModelRuntime.load(model_dir / name)
    message = str(info.value)
    assert reason in message
    assert "\n" not in message


def test_refuses_an_invalid_card(model_dir: Path, tmp_path: Path) -> None:
    import onnx

    from bnfold.card import CARD_KEY

    model = onnx.load(model_dir / "tabular.onnx")
    for prop in model.metadata_props:
        if prop.key == CARD_KEY:
            prop.value = '{"name": 3}'
    (tmp_path / "bad.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(ModelLoadError, match="invalid model card"):
        ModelRuntime.load(tmp_path / "bad.onnx")


def test_refuses_a_card_whose_input_differs_from_the_graph(
    model_dir: Path, tabular_card: ModelCard, tmp_path: Path
) -> None:
    import onnx
    import svc_models

    model = onnx.load(model_dir / "tabular.onnx")
    spec = tabular_card.input.model_copy(update={"name": "x"})
    bad = svc_models.with_card(model, tabular_card, input=spec)
    with pytest.raises(ModelLoadError, match="graph inputs"):
        ModelRuntime.load(svc_models.save(bad, tmp_path / "m.onnx"))


def test_refuses_a_card_without_golden_samples(
    model_dir: Path, tabular_card: ModelCard, tmp_path: Path
) -> None:
    import onnx
    import svc_models

    bad = svc_models.with_card(onnx.load(model_dir / "tabular.onnx"), tabular_card, golden=[])
    with pytest.raises(ModelLoadError, match="invalid model card: golden"):
        ModelRuntime.load(svc_models.save(bad, tmp_path / "m.onnx"))


def test_reads_a_read_only_file(model_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "ro.onnx"
    target.write_bytes((model_dir / "tabular.onnx").read_bytes())
    target.chmod(0o444)
    assert ModelRuntime.load(target).name == "iris"


def test_onnxruntime_telemetry_is_off() -> None:
    import os

    assert os.environ["ORT_DISABLE_TELEMETRY"] == "1"

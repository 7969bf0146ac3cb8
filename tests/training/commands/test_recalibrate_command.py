"""``python -m training recalibrate``: AdaBN exported, verified, provenance; errors write nothing.

The oracle is the unfolded PyTorch model whose standardization and BN statistics are
recomputed on the target data in float64 (tests/training/adabn_oracle.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from adabn_oracle import oracle_logits
from training_checkpoints import make_checkpoint

from bnfold import digest
from training import recalibrate as recalibrate_module
from training.checkpoint import load_checkpoint
from training.cli import main
from training.commands.recalibrate_options import VERIFY_SAMPLES
from training.data import load_splits
from training.recalibrate_export import split_target
from training.reference import reference_model, reference_outputs
from training.verify import PARITY_TOLERANCE

FAST = ["--verify-samples", "24", "--quiet"]
ALL = ["--holdout", "0"]  # every target sample goes into the statistics, as in the oracle


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def onnx_probabilities(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["probabilities"], {"input": x.astype(np.float32)})[0])


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wine MLP run folder: checkpoint.pt and the model.onnx exported from it."""
    folder = tmp_path_factory.mktemp("wine")
    make_checkpoint(folder / "checkpoint.pt", "wine", "mlp", (16, 8))
    assert main(["export", str(folder / "checkpoint.pt"), "--out", str(folder), "--quiet"]) == 0
    return folder


@pytest.fixture(scope="module")
def target(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """Shifted wine samples (train and val splits) and their labels."""
    splits = load_splits(load_checkpoint(run / "checkpoint.pt").data_spec)
    x = np.concatenate([splits.train.X, splits.val.X])
    y = np.concatenate([splits.train.y, splits.val.y])
    return (x * 1.3 + np.float32(0.2) * x.std(axis=0)).astype(np.float32), y


def one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for needle in needles:
        assert needle in err, err


def test_unlabelled_target(
    run: Path, target: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    data = tmp_path / "target.npz"
    np.savez(data, X=target[0])
    out = tmp_path / "adapted"
    argv = ["recalibrate", str(run / "checkpoint.pt"), "--data", str(data), "--out", str(out)]
    assert main([*argv, *FAST, *ALL]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "card.json",
        "card.md",
        "checkpoint.pt",
        "model.onnx",
        "recalibration.json",
        "verify.json",
    ]
    parent = digest.check((run / "model.onnx").read_bytes())
    card = digest.check((out / "model.onnx").read_bytes())
    assert card.recalibration is not None
    assert card.recalibration.parent_version == parent.version
    assert card.recalibration.target_sha256 == hashlib.sha256(data.read_bytes()).hexdigest()
    assert card.recalibration.target_samples == len(target[0])
    assert (
        f"Recalibrated** (adabn) from version `{parent.version}`" in (out / "card.md").read_text()
    )
    assert card.version != parent.version and card.name == parent.name
    assert card.stats_mode == "exact" and card.metrics == {}  # no labels: no accuracy
    assert card.monitor is None  # nothing held out to calibrate it on
    assert card.data is not None and card.data.source == "npz" and card.data.name == "target.npz"
    assert card.data.class_counts == parent.data.class_counts  # type: ignore[union-attr]

    test = load_splits(load_checkpoint(run / "checkpoint.pt").data_spec).test.X * 1.3
    ckpt = load_checkpoint(run / "checkpoint.pt")
    want = softmax(oracle_logits(ckpt, target[0], test))
    got = onnx_probabilities(out / "model.onnx", test)
    assert np.max(np.abs(got - want)) <= PARITY_TOLERANCE
    before = onnx_probabilities(run / "model.onnx", test)
    assert np.max(np.abs(before - want)) > 0.05  # the parent answers otherwise
    # The recalibrated checkpoint is that model, unfolded.
    _, again = reference_outputs(reference_model(load_checkpoint(out / "checkpoint.pt")), test)
    assert np.max(np.abs(again - want)) <= 1e-6
    assert json.loads((out / "verify.json").read_text())["passed"] is True
    report = json.loads((out / "recalibration.json").read_text())
    assert report["parent_version"] == parent.version and report["version"] == card.version


def test_a_held_out_part_calibrates_the_drift_monitor(
    run: Path, target: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x = target[0]
    data = tmp_path / "target.npz"
    np.savez(data, X=x)
    out = tmp_path / "adapted"
    argv = ["recalibrate", str(run / "checkpoint.pt"), "--data", str(data), "--out", str(out)]
    assert main([*argv, *FAST]) == 0  # --holdout 0.2
    split = split_target(len(x), 0.2)
    np.testing.assert_array_equal(split.calibration, split_target(len(x), 0.2).calibration)
    both = np.concatenate([split.statistics, split.calibration])
    assert len(split.calibration) == round(0.2 * len(x))
    np.testing.assert_array_equal(np.sort(both), np.arange(len(x)))  # disjoint, complete
    card = digest.check((out / "model.onnx").read_bytes())
    assert card.data is not None and card.monitor is not None
    assert card.data.samples == {
        "statistics": len(split.statistics),
        "calibration": len(split.calibration),
    }
    assert card.recalibration is not None
    assert card.recalibration.target_samples == len(split.statistics)
    assert "target.npz (held-out part)" in card.monitor.calibration_data
    test = load_splits(load_checkpoint(run / "checkpoint.pt").data_spec).test.X * 1.3
    want = softmax(oracle_logits(load_checkpoint(run / "checkpoint.pt"), x[split.statistics], test))
    assert np.max(np.abs(onnx_probabilities(out / "model.onnx", test) - want)) <= PARITY_TOLERANCE


def test_labelled_target_reports_accuracy_before_and_after(
    run: Path,
    target: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    x, y = target
    data, held_out = tmp_path / "target.npz", tmp_path / "eval.npz"
    np.savez(data, X=x, y=y)
    splits = load_splits(load_checkpoint(run / "checkpoint.pt").data_spec)
    x_eval = (splits.test.X * 1.3 + np.float32(0.2) * x.std(axis=0) / 1.3).astype(np.float32)
    np.savez(held_out, X=x_eval, y=splits.test.y)
    out = tmp_path / "adapted"
    argv = ["recalibrate", str(run / "checkpoint.pt"), "--data", str(data), "--out", str(out)]
    assert main([*argv, "--eval", str(held_out), "--verify-samples", "24", *ALL]) == 0
    printed = capsys.readouterr().out
    ckpt = load_checkpoint(run / "checkpoint.pt")
    card = digest.check((out / "model.onnx").read_bytes())
    for prefix, (xs, ys) in (("target", (x, y)), ("eval", (x_eval, splits.test.y))):
        parent_logits, _ = reference_outputs(reference_model(ckpt), xs)
        before = float(np.mean(parent_logits.argmax(axis=1) == ys))
        after = float(np.mean(oracle_logits(ckpt, x, xs).argmax(axis=1) == ys))
        assert card.metrics[f"{prefix}_acc_before"] == pytest.approx(before)
        assert card.metrics[f"{prefix}_acc_after"] == pytest.approx(after)
        assert f"{before:.2%} before -> {after:.2%} after" in printed
    assert card.data is not None and card.data.class_counts == np.bincount(y).tolist()


def test_export_and_recalibrate_again_from_a_recalibrated_checkpoint(
    run: Path,
    target: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "target.npz"
    np.savez(data, X=target[0])
    first = tmp_path / "first"
    assert (
        main(
            [
                "recalibrate",
                str(run / "checkpoint.pt"),
                "--data",
                str(data),
                "--out",
                str(first),
                *FAST,
            ]
        )
        == 0
    )
    # `export` of the recalibrated checkpoint redoes the recalibrated export ...
    again = tmp_path / "again"
    assert main(["export", str(first / "checkpoint.pt"), "--out", str(again), "--quiet"]) == 0
    one = digest.check((first / "model.onnx").read_bytes())
    two = digest.check((again / "model.onnx").read_bytes())
    skip = {"created_at", "digest", "versions"}
    assert one.model_dump(exclude=skip) == two.model_dump(exclude=skip)
    # ... and `recalibrate` starts from it: its parent is the first recalibrated model.
    second = tmp_path / "second"
    argv = ["recalibrate", str(first / "checkpoint.pt"), "--data", str(data), "--out", str(second)]
    assert main([*argv, *FAST]) == 0
    card = digest.check((second / "model.onnx").read_bytes())
    assert card.recalibration is not None and card.recalibration.parent_version == one.version
    # A target file that changed since is noticed by `export`.
    np.savez(data, X=target[0][::-1])
    assert main(["export", str(first / "checkpoint.pt"), "--out", str(tmp_path / "x")]) == 2
    one_line_error(capsys, "changed since the model was recalibrated")


def test_bad_input_is_one_line_and_writes_nothing(
    run: Path,
    target: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "target.npz"
    np.savez(data, X=target[0])
    out = tmp_path / "out"

    def fails(
        *argv: str, checkpoint: Path = run / "checkpoint.pt", data: Path = data, new: bool = True
    ) -> None:
        code = main(["recalibrate", str(checkpoint), "--data", str(data), "--out", str(out), *argv])
        assert code == 2
        assert not new or not out.exists()

    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(run / "checkpoint.pt", alone / "checkpoint.pt")
    fails(checkpoint=alone / "checkpoint.pt")
    one_line_error(capsys, "no model.onnx beside", "export the checkpoint first", "--parent")
    fails("--parent", str(tmp_path / "none.onnx"), checkpoint=alone / "checkpoint.pt")
    one_line_error(capsys, "--parent", "does not exist")

    other = tmp_path / "other"
    make_checkpoint(other / "checkpoint.pt", "wine", "mlp", (16, 8), bn_position="after")
    assert main(["export", str(other / "checkpoint.pt"), "--out", str(other), "--quiet"]) == 0
    fails("--parent", str(other / "model.onnx"))
    one_line_error(capsys, "was not exported from", "golden samples differ")
    (alone / "model.onnx").write_bytes((run / "model.onnx").read_bytes()[:-50])
    fails(checkpoint=alone / "checkpoint.pt")
    one_line_error(capsys, "parent model", "model.onnx")

    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, X=target[0][:, :5])
    fails(data=wrong)
    one_line_error(capsys, "wrong.npz: the model's feature 'alcohol' is not a column")
    fails("--labels", "require")
    one_line_error(capsys, "target.npz: no labels")
    fails("--eval", str(data))
    one_line_error(capsys, "target.npz: no labels")

    out.mkdir()
    (out / "summary.json").write_text("{}")
    fails(new=False)
    one_line_error(capsys, "holds other files (summary.json)")
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]
    shutil.rmtree(out)
    assert (
        main(["recalibrate", str(run / "checkpoint.pt"), "--data", str(data), "--out", str(run)])
        == 2
    )
    one_line_error(capsys, "holds the model being recalibrated")


def test_failed_verification_writes_nothing(
    run: Path,
    target: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Verified against the PARENT's unfolded model, the recalibrated export must fail."""
    data = tmp_path / "target.npz"
    np.savez(data, X=target[0])
    out = tmp_path / "adapted"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"the previous model")
    parent = reference_model(load_checkpoint(run / "checkpoint.pt"))
    real = recalibrate_module.verify_model
    monkeypatch.setattr(
        recalibrate_module, "verify_model", lambda path, _oracle, x, y: real(path, parent, x, y)
    )
    argv = ["recalibrate", str(run / "checkpoint.pt"), "--data", str(data), "--out", str(out)]
    assert main([*argv, "--verify-samples", "24"]) == 1
    assert "failed verification; nothing was written" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx"]
    assert (out / "model.onnx").read_bytes() == b"the previous model"


def test_verify_samples_default_is_the_modules() -> None:
    assert VERIFY_SAMPLES == recalibrate_module.VERIFY_SAMPLES


def test_image_model_on_an_unlabelled_image_folder(tmp_path: Path) -> None:
    from example_datasets import digits_folder
    from PIL import Image

    root = digits_folder(tmp_path / "digits", scale=2, limit=90)
    run = tmp_path / "run"
    make_checkpoint(run / "checkpoint.pt", str(root), "cnn", (4,))
    assert main(["export", str(run / "checkpoint.pt"), "--out", str(run), "--quiet"]) == 0
    dim = tmp_path / "dim"  # the same files, darker, with no class folders
    dim.mkdir()
    for path in sorted(root.glob("*/*.png")):
        pixels = np.asarray(Image.open(path), dtype=np.float64) * 0.5 + 40
        Image.fromarray(pixels.astype(np.uint8), mode="L").save(
            dim / f"{path.parent.name}-{path.name}"
        )
    out = tmp_path / "adapted"
    argv = ["recalibrate", str(run / "checkpoint.pt"), "--data", str(dim), "--out", str(out)]
    assert main([*argv, *FAST]) == 0
    card = digest.check((out / "model.onnx").read_bytes())
    assert card.data is not None and card.data.source == "images" and card.metrics == {}
    assert card.recalibration is not None and card.recalibration.target_samples == 72  # 90 - 18
    assert card.monitor is not None  # 18 held out: enough for windows of 16
    assert card.input == digest.check((run / "model.onnx").read_bytes()).input  # same decoding


@pytest.mark.slow
def test_the_default_digits_model_recovers_from_a_brightness_shift(tmp_path: Path) -> None:
    """models/digits: +4 brightness (clipped to 0..16) costs accuracy; AdaBN on the unlabelled
    shifted training split wins most of it back on the shifted test split."""
    root = Path(__file__).resolve().parents[3] / "models" / "digits"
    splits = load_splits(load_checkpoint(root / "checkpoint.pt").data_spec)
    data, held_out = tmp_path / "train.npz", tmp_path / "test.npz"
    np.savez(data, X=np.clip(splits.train.X + 4, 0, 16))
    np.savez(held_out, X=np.clip(splits.test.X + 4, 0, 16), y=splits.test.y)
    result = recalibrate_module.recalibrate_checkpoint(
        root / "checkpoint.pt", data, tmp_path / "out", evaluation=held_out, verify_samples=64
    )
    (accuracy,) = result.accuracy
    assert accuracy.samples == len(splits.test)
    assert accuracy.before < 0.9 and accuracy.after >= 0.97

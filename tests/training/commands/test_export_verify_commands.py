"""``python -m training export|verify|all``: exit codes, one-line errors, files written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from training_checkpoints import make_checkpoint

from training.cli import main

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    make_checkpoint(run / "checkpoint.pt", "wine", "mlp", (16, 8))
    assert main(["export", str(run / "checkpoint.pt"), "--out", str(run)]) == 0
    return run


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    for needle in needles:
        assert needle in err


def test_export_writes_model_and_card(exported: Path) -> None:
    assert (exported / "model.onnx").is_file()
    assert json.loads((exported / "card.json").read_text())["bn_nodes"] == 0


def test_verify_passes_and_writes_json(exported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(exported / "model.onnx")]) == 0
    assert "verdict" in capsys.readouterr().out
    report = json.loads((exported / "verify.json").read_text())
    assert report["passed"] is True
    assert report["parity"]["argmax_mismatches"] == 0
    assert report["parity"]["max_abs_prob_diff"] <= 1e-5
    assert report["batch_independence"]["max_abs_prob_diff"] <= 1e-6
    assert report["batch_independence"]["max_batch"] == 64


def test_verify_on_a_user_file(exported: Path, tmp_path: Path) -> None:
    import numpy as np

    from training.checkpoint import load_checkpoint
    from training.data import load_splits

    split = load_splits(load_checkpoint(exported / "checkpoint.pt").data_spec).val
    data = tmp_path / "holdout.npz"
    np.savez(data, X=split.X, y=split.y)
    assert main(["verify", str(exported / "model.onnx"), "--data", str(data)]) == 0


def test_verify_fails_against_another_checkpoint(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = make_checkpoint(tmp_path / "other.pt", "wine", "mlp", (16, 4))
    assert main(["verify", str(exported / "model.onnx"), "--checkpoint", str(other)]) == 1
    assert "NO" in capsys.readouterr().out


def test_export_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path / "missing.pt"), "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "checkpoint not found", "missing.pt")


def test_verify_missing_model(exported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["verify", "nope.onnx", "--checkpoint", str(exported / "checkpoint.pt")])
    assert code == 2
    _one_line_error(capsys, "nope.onnx", "does not exist")


def test_verify_corrupt_model(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a protobuf at all" * 10)
    code = main(["verify", str(bad), "--checkpoint", str(exported / "checkpoint.pt")])
    assert code == 2
    _one_line_error(capsys, "model.onnx")


def test_export_bad_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["export", "x.pt", "--out", "y", "--opset", "many"])
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.slow
def test_all_trains_exports_and_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bc"
    code = main(["all", "--dataset", "breast_cancer", "--out", str(out), "--epochs", "3"])
    assert code == 0
    for name in ("checkpoint.pt", "model.onnx", "card.json", "verify.json", "summary.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "verify.json").read_text())["passed"] is True
    text = capsys.readouterr().out
    assert "verified" in text
    # stdout is not a terminal here: one line per epoch, with loss, accuracy, lr and time.
    epochs = [line for line in text.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/3", "2/3", "3/3"]
    assert all(" lr " in line and " s (total " in line and "val acc" in line for line in epochs)
    # The summary line and the table state the same measured training time.
    line = re.search(r"training loop (\d+\.\d s) \(3 epochs\)", text)
    row = re.search(r"time: training loop \(3 epochs\)\s*│\s*(\d+\.\d s)", text)
    assert line and row, text
    assert line.group(1) == row.group(1)
    metrics = json.loads((out / "summary.json").read_text())["metrics"]
    assert line.group(1) == f"{metrics['train_time_s']:.1f} s"


@pytest.mark.slow
def test_quiet_is_quiet(tmp_path: Path) -> None:
    argv = ["all", "--dataset", "breast_cancer", "--epochs", "2", "--quiet"]
    done = subprocess.run(
        [sys.executable, "-m", "training", *argv, "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
    assert (tmp_path / "run" / "checkpoint.pt").is_file()

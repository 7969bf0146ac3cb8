"""``python -m training fold CHECKPOINT [--json OUT]``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from training_checkpoints import make_checkpoint

from training.cli import main


@pytest.mark.parametrize(
    ("dataset", "kind", "widths", "position"),
    [
        ("wine", "mlp", (16, 8), "before"),
        ("wine", "mlp", (16, 8), "after"),
        ("digits", "cnn", (4, 8), "before"),
        ("digits", "cnn", (4, 8), "after"),
    ],
)
def test_fold_command_folds_every_bn(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dataset: str,
    kind: str,
    widths: tuple[int, ...],
    position: str,
) -> None:
    ckpt = make_checkpoint(tmp_path / "ckpt.pt", dataset, kind, widths, position)
    out = tmp_path / "report.json"
    assert main(["fold", str(ckpt), "--json", str(out), "--samples", "64"]) == 0
    text = capsys.readouterr().out
    assert f"{len(widths)}/{len(widths)} folded" in text
    assert "BatchNorm layers left in the folded model: 0" in text
    report = json.loads(out.read_text())
    assert (report["bn_total"], report["folded"], report["refused"]) == (len(widths),) * 2 + (0,)
    assert report["max_relative_error"] <= 1e-5
    direction = "backward" if position == "before" else "forward"
    assert {e["direction"] for e in report["entries"]} == {direction}


def test_fold_command_missing_checkpoint_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fold", str(tmp_path / "nope.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint not found") and err.count("\n") == 1


def test_fold_command_rejects_bad_samples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = make_checkpoint(tmp_path / "ckpt.pt", "wine", "mlp", (8,), "before")
    assert main(["fold", str(ckpt), "--samples", "0"]) == 2
    assert "--samples" in capsys.readouterr().err

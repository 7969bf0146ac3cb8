"""Console output (training/console.py): progress bar on a terminal, lines in logs, quiet."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from training import console
from training.console import EpochProgress, epoch_line, print_table, say, set_quiet


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def loud() -> Iterator[None]:
    set_quiet(False)
    yield
    set_quiet(False)


def row(epoch: int) -> dict[str, float]:
    return {
        "epoch": float(epoch),
        "train_loss": 0.5,
        "train_acc": 0.875,
        "val_loss": 0.25,
        "val_acc": 0.9,
        "lr": 1e-3,
        "time_s": 2.0 * epoch,
    }


def run(progress: EpochProgress, epochs: int = 2, steps: int = 3) -> None:
    for epoch in range(1, epochs + 1):
        progress.start_epoch(epoch)
        for _ in range(steps):
            progress.step(loss=0.5, correct=7.0, count=8, lr=1e-3)
        progress.end_epoch(row(epoch))


def test_a_log_gets_one_plain_line_per_epoch() -> None:
    stream = io.StringIO()
    run(EpochProgress(2, 3, stream))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in stream.getvalue()
    assert lines[1].startswith("epoch 2/2  loss 0.5000  acc  87.50%  val loss 0.2500")
    assert "val acc  90.00%  lr 1.00e-03" in lines[1] and lines[1].endswith("(total 4.0 s)")


def test_a_terminal_gets_a_live_bar_per_epoch_then_the_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(EpochProgress, "refresh_s", 0.0)  # draw every step
    stream = Terminal()
    run(EpochProgress(2, 3, stream))
    text = stream.getvalue()
    assert "epoch 1/2:" in text and "3/3" in text and "batch" in text and "\r" in text
    assert "loss 0.5000  acc 87.50%  lr 1.00e-03" in text  # the bar's running figures
    assert text.count("val loss 0.2500") == 2


def test_quiet_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    set_quiet(True)
    stream = Terminal()
    run(EpochProgress(2, 3, stream))
    say("hello")
    print_table("t", [("a", 1)])
    assert stream.getvalue() == ""
    assert capsys.readouterr() == ("", "")
    set_quiet(False)
    say("hello")
    print_table("t", [("a", True)])
    out = capsys.readouterr().out
    assert out.startswith("hello\n") and "yes" in out


def test_epoch_line_pads_to_the_epoch_count() -> None:
    assert epoch_line(row(3), 120, 0.5).startswith("epoch   3/120  ")
    assert console.seconds(1.25) == "1.2 s"

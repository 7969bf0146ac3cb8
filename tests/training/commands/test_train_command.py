"""``python -m training train`` (training/commands/train.py): options, run folder, bad input."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pytest
import torch

from training import cli
from training.checkpoint import load_checkpoint
from training.commands import train as train_command
from training.commands.train_options import add_train_arguments
from training.data import Standardization, load_splits, make_data_spec

ROOT = Path(__file__).resolve().parents[3]


def test_every_option_is_explained_in_its_group() -> None:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert len(options) >= 25
    for action in options:
        assert action.help and len(action.help) > 10, action.option_strings
    groups = {g.title: [a.dest for a in g._group_actions] for g in parser._action_groups}
    assert groups["data"] == [
        "dataset", "label_column", "labels", "features", "categorical", "missing", "channels",
        "image_size", "val_fraction", "test_fraction", "split_seed", "out",
    ]  # fmt: skip
    assert {"kind", "widths", "dropout"} <= set(groups["model"])
    assert {"epochs", "lr", "label_smoothing"} <= set(groups["optimization"])
    assert {"stats", "seed", "sync_bn", "threads", "quiet"} <= set(groups["run"])


@pytest.mark.parametrize(
    ("dataset", "kind", "widths", "dropout", "smoothing"),
    [("digits", "cnn", (32, 64, 128), 0.0, 0.1), ("breast_cancer", "mlp", (32,), 0.2, 0.0)],
)
def test_defaults_depend_on_the_model_kind(
    dataset: str, kind: str, widths: tuple[int, ...], dropout: float, smoothing: float
) -> None:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    args = parser.parse_args(["--dataset", dataset])
    model_config, train_config = train_command.configs_from_args(
        args, load_splits(make_data_spec(dataset))
    )
    assert (model_config.kind, model_config.widths, model_config.dropout) == (kind, widths, dropout)
    assert train_config.label_smoothing == smoothing
    args = parser.parse_args(["--dataset", dataset, "--dropout", "0.3", "--label-smoothing", "0"])
    model_config, train_config = train_command.configs_from_args(
        args, load_splits(make_data_spec(dataset))
    )
    assert model_config.dropout == 0.3 and train_config.label_smoothing == 0.0


def test_train_writes_the_run_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    (out / "plots").mkdir(parents=True)
    (out / "plots" / "bn_0_layers_1.png").write_bytes(b"left by an older version")
    argv = ["train", "--dataset", "breast_cancer", "--epochs", "3", "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0
    assert {p.name for p in out.iterdir()} == {
        "checkpoint.pt", "metrics.jsonl", "summary.json", "plots"
    }  # fmt: skip
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr"} <= set(rows[0])
    summary = json.loads((out / "summary.json").read_text())
    for split in ("val", "test"):
        assert set(summary["accuracy"][split]) == {"ema", "exact"}
    assert summary["stats_mode"] == "exact"
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert plots == ["bn_stats.png", "curves.png", "lr.png"]
    assert all((out / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)
    assert (
        sorted(summary["plot_captions"])
        == sorted(summary["plots"])
        == [f"plots/{p}" for p in plots]
    )
    # Tabular data: the image-only options are not in the summary (they are in the checkpoint).
    assert "augment_shift" not in summary["train_config"]
    assert "exact_inputs" not in summary["train_config"]
    assert summary["train_config"]["epochs"] == 3

    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt.labels == ["malignant", "benign"]
    assert ckpt.input["feature_names"][0] == "mean radius"
    assert ckpt.metrics["test_acc_exact"] == summary["accuracy"]["test"]["exact"]
    # The checkpoint alone reproduces the split, the standardization and the accuracy.
    splits = load_splits(ckpt.data_spec)
    std = Standardization.fit(splits.train.X)
    np.testing.assert_allclose(std.mean, ckpt.standardization.mean)
    with torch.no_grad():
        logits = ckpt.build()(torch.as_tensor(ckpt.standardization.apply(splits.test.X)))
    accuracy = float((logits.argmax(1).numpy() == splits.test.y).mean())
    assert accuracy == pytest.approx(ckpt.metrics["test_acc_exact"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "mnist"], "unknown dataset 'mnist'"),
        (["--dataset", "{tmp}/absent.csv"], "not found"),
        (["--dataset", "{tmp}/data.csv"], "--label-column"),
        (["--dataset", "{tmp}/data.csv", "--label-column", "nope"], "no label column 'nope'"),
        (["--dataset", "{tmp}/data.csv", "--label-column", "name"], "class 'w' has 1 sample"),
        (["--dataset", "{tmp}/data.csv", "--label-column", "y"], "class '0' has 2 sample"),
        (
            ["--dataset", "{tmp}/data.csv", "--label-column", "y", "--features", "a,zz"],
            "--features names 'zz' is not a column of the file (its columns: 'a', 'name', 'y')",
        ),
        (
            ["--dataset", "{tmp}/data.csv", "--label-column", "y", "--categorical", "y"],
            "--categorical names 'y', which is not a feature column",
        ),
        (
            ["--dataset", "{tmp}/data.csv", "--label-column", "y", "--labels", "0,2"],
            "data.csv: line 3, column 'y': label '1' is not one of --labels (0, 2)",
        ),
        (["--dataset", "{tmp}/gaps.csv", "--label-column", "y"], "line 3, column 'a': missing"),
        (["--labels", "only"], "--labels needs at least 2 class names"),
        (["--labels", "{tmp}/absent.txt"], "--labels: cannot read"),
        (["--dataset", "wine", "--image-size", "8,8"], "--image-size does not apply"),
        (["--image-size", "8,8,8"], "--image-size takes H,W (two values)"),
        (["--dataset", "{tmp}", "--missing", "mean"], "--missing does not apply"),
        (["--dataset", "{tmp}"], "{tmp}: no class sub-folders with images"),
        (["--batch-size", "1"], "--batch-size must be >= 2 (BatchNorm needs 2+ samples"),
        (["--batch-size", "5000"], "fewer than --batch-size 5000"),
        (["--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["--bn-momentum", "1.5"], "--bn-momentum must be in (0, 1], got 1.5"),
        (["--dropout", "1"], "--dropout must be in [0, 1), got 1"),
        (["--lr", "nan"], "--lr must be a finite number, got nan"),
        (["--widths", "32,0"], "every value of --widths must be >= 1, got 32,0"),
        (["--threads", "-1"], "--threads must be >= 0, got -1"),
        (["--val-fraction", "0.5", "--test-fraction", "0.5"], "must be < 1"),
        (["--sync-bn"], "--sync-bn needs a multi-process launch"),
        (["--out", "/proc/bnfold-run"], "--out /proc/bnfold-run: cannot write in /proc"),
        (["--widths", "8,8,8,8"], "too small"),
        (["--dataset", "wine", "--model", "cnn"], "needs image data"),
    ],
)
def test_bad_input_stops_before_training_with_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    (tmp_path / "data.csv").write_text("a,name,y\n1,x,0\n2,y,1\n3,z,0\n4,w,1\n")
    (tmp_path / "gaps.csv").write_text("a,y\n1,0\nNA,1\n3,0\n")

    def no_training(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("training started despite bad input")

    monkeypatch.setattr(train_command, "fit", no_training)
    argv = ["train", "--out", str(tmp_path / "out"), "--quiet"]
    argv += [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert message.replace("{tmp}", str(tmp_path)) in err
    assert not (tmp_path / "out").exists()


def test_argparse_rejects_unknown_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--optimizer", "lbfgs"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_cli_process_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "training", "train", "--dataset", str(tmp_path / "x.npz")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "dataset file not found" in done.stderr


def test_stats_ema_keeps_the_running_averages(tmp_path: Path) -> None:
    out = tmp_path / "ema"
    argv = ["train", "--dataset", "wine", "--epochs", "2", "--stats", "ema", "--out", str(out)]
    assert cli.main([*argv, "--quiet"]) == 0
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt.stats_mode == "ema"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy"]["val"]["ema"] == ckpt.metrics["val_acc_ema"]


@pytest.mark.slow
def test_torchrun_two_processes_with_sync_bn_match_one_process(tmp_path: Path) -> None:
    common = ["train", "--dataset", "breast_cancer", "--epochs", "8", "--dropout", "0", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    ddp_args = ["--sync-bn", "--out", str(tmp_path / "ddp")]
    command = [*torchrun, "-m", "training", *common[:-1], *ddp_args]  # not quiet
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # Rank 0 says how it runs, once; the other process prints nothing.
    assert (
        done.stdout.count("torchrun: world size 2, 32 samples per process; SyncBatchNorm on") == 1
    )
    assert done.stdout.count("training MLP") == 1
    assert done.stdout.count("epoch 8/8") == 1
    assert cli.main([*common, "--out", str(tmp_path / "single")]) == 0
    ddp = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    single = load_checkpoint(tmp_path / "single" / "checkpoint.pt")
    assert ddp.metrics["world_size"] == 2 and single.metrics["world_size"] == 1
    for key in ("val_acc_exact", "test_acc_exact", "val_acc_ema", "test_acc_ema"):
        assert abs(ddp.metrics[key] - single.metrics[key]) <= 0.01, key
    # Same global batches and synchronized BN statistics: the same model up to rounding.
    for name, value in single.state_dict.items():
        torch.testing.assert_close(ddp.state_dict[name], value, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_a_terminal_gets_a_progress_bar(tmp_path: Path) -> None:
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    argv = ["train", "--dataset", "wine", "--epochs", "2", "--out", str(tmp_path / "run")]
    with subprocess.Popen(
        [sys.executable, "-m", "training", *argv],
        stdout=secondary,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ) as proc:
        os.close(secondary)
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=120) == 0
    os.close(primary)
    text = b"".join(chunks).decode()
    steps = len(load_splits(make_data_spec("wine")).train) // 64
    assert "epoch 1/2:   0%|" in text and f"0/{steps}" in text  # the live bar, drawn with \r
    assert "\r" in text
    assert "epoch 2/2  loss" in text  # and the epoch's line once the bar is cleared

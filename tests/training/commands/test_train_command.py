"""``python -m training train`` (training/commands/train.py): options, run folder, bad input."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from training import cli
from training.checkpoint import load_checkpoint
from training.commands import train as train_command
from training.data import Standardization, load_splits, make_data_spec

ROOT = Path(__file__).resolve().parents[3]


def test_every_option_is_explained() -> None:
    parser = argparse.ArgumentParser()
    train_command.add_train_arguments(parser)
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert len(options) >= 25
    for action in options:
        assert action.help and len(action.help) > 10, action.option_strings


@pytest.mark.parametrize(
    ("dataset", "kind", "widths", "dropout", "smoothing"),
    [("digits", "cnn", (32, 64, 128), 0.0, 0.1), ("breast_cancer", "mlp", (32,), 0.2, 0.0)],
)
def test_defaults_depend_on_the_model_kind(
    dataset: str, kind: str, widths: tuple[int, ...], dropout: float, smoothing: float
) -> None:
    parser = argparse.ArgumentParser()
    train_command.add_train_arguments(parser)
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
    assert plots == ["bn_0_layers_1.png", "curves.png"]
    assert all((out / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)

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
        (["--dataset", "{tmp}/data.csv", "--label-column", "name"], "label column 'name'"),
        (["--dataset", "{tmp}/data.csv", "--label-column", "y"], "column 'name' is not numeric"),
        (["--batch-size", "1"], "at least 2"),
        (["--batch-size", "5000"], "fewer than --batch-size 5000"),
        (["--epochs", "0"], "--epochs"),
        (["--bn-momentum", "1.5"], "--bn-momentum"),
        (["--dropout", "1"], "--dropout"),
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

    def no_training(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("training started despite bad input")

    monkeypatch.setattr(train_command, "fit", no_training)
    argv = ["train", "--out", str(tmp_path / "out"), "--quiet"]
    argv += [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert message in err
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
    command = [*torchrun, "-m", "training", *common, "--sync-bn", "--out", str(tmp_path / "ddp")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert cli.main([*common, "--out", str(tmp_path / "single")]) == 0
    ddp = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    single = load_checkpoint(tmp_path / "single" / "checkpoint.pt")
    assert ddp.metrics["world_size"] == 2 and single.metrics["world_size"] == 1
    for key in ("val_acc_exact", "test_acc_exact", "val_acc_ema", "test_acc_ema"):
        assert abs(ddp.metrics[key] - single.metrics[key]) <= 0.01, key
    # Same global batches and synchronized BN statistics: the same model up to rounding.
    for name, value in single.state_dict.items():
        torch.testing.assert_close(ddp.state_dict[name], value, rtol=1e-3, atol=1e-4)

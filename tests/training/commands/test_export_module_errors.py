"""``export-module`` / ``verify --module`` bad input: one line, exit status 2, nothing written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from own_nets import TabularMLP

from training.cli import main

MODULE = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 8, bias=False)
        self.bn = nn.BatchNorm1d(8)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        return self.out(torch.relu(self.bn(self.fc(x))))


class Branchy(Net):
    def forward(self, x):
        if x.sum() > 0:
            return self.out(self.bn(self.fc(x)))
        return -self.out(self.bn(self.fc(x)))


def build():
    return Net()


def broken():
    raise ValueError("no such variant")


def not_a_module():
    return 42


def pair():
    class Two(Net):
        def forward(self, x):
            return self.out(self.bn(self.fc(x))), x
    return Two()


class PairsOnly(Net):
    def forward(self, x):
        return self.out(torch.relu(self.bn(self.fc(x)))).reshape(2, -1)[:, :3]


class Eig(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4, bias=False)
        self.bn = nn.BatchNorm1d(4)
        self.out = nn.Linear(2, 3)

    def forward(self, x):
        return self.out(torch.linalg.eigvals(self.bn(self.fc(x)).reshape(-1, 2, 2)).real)


VALUE = 3
"""


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "net.py").write_text(MODULE)
    (tmp_path / "syntax.py").write_text("def build(:\n    pass\n")
    (tmp_path / "raises.py").write_text("raise RuntimeError('cannot import here')\n")
    import importlib.util

    spec = importlib.util.spec_from_file_location("errnet", tmp_path / "net.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    state = module.Net().state_dict()
    torch.save(state, tmp_path / "w.pt")
    torch.save({k: v for k, v in state.items() if k != "out.bias"}, tmp_path / "missing.pt")
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "unexpected.pt")
    torch.save({**state, "fc.weight": torch.zeros(8, 5)}, tmp_path / "shape.pt")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "nested.pt")
    torch.save({"epoch": 3}, tmp_path / "epoch.pt")
    torch.save(TabularMLP().state_dict(), tmp_path / "other.pt")
    (tmp_path / "garbage.pt").write_bytes(b"\x00not a torch file" * 20)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "good.npz", X=rng.normal(size=(20, 4)).astype(np.float32))
    np.savez(tmp_path / "no_x.npz", features=np.zeros((20, 4)))
    np.savez(tmp_path / "shape.npz", X=np.zeros((20, 5)))
    bad = rng.normal(size=(20, 4))
    bad[7, 2] = np.nan
    np.savez(tmp_path / "nan.npz", X=bad)
    big = rng.normal(size=(20, 4))
    big[3, 0] = 1e39
    np.savez(tmp_path / "big.npz", X=big)
    np.savez(tmp_path / "labels.npz", X=np.zeros((20, 4)), y=np.full(20, 9))
    np.savez(
        tmp_path / "names.npz",
        X=np.zeros((20, 4)),
        y=np.array(["a", "b", "zebra"] * 6 + ["a", "a"]),
    )
    (tmp_path / "zip.npz").write_bytes(b"PK\x03\x04 not really a zip")
    return {p.stem if p.suffix != ".npz" else p.stem + "_npz": p for p in tmp_path.iterdir()} | {
        "root": tmp_path
    }


def base(files: dict[str, Path], **changes: str | None) -> list[str]:
    options: dict[str, str | None] = {
        "module": f"{files['net']}:build",
        "--weights": str(files["w"]),
        "--input-shape": "4",
        "--labels": "a,b,c",
        "--data": str(files["good_npz"]),
        "--out": str(files["root"] / "out"),
    }
    options.update(
        {k.replace("_", "-") if k.startswith("--") else k: v for k, v in changes.items()}
    )
    args = ["export-module", str(options.pop("module"))]
    for flag, value in options.items():
        if value is not None:
            args += [flag, value]
    return args


CASES: list[tuple[str, Callable[[dict[str, Path]], dict[str, str | None]], tuple[str, ...]]] = [
    ("missing file", lambda f: {"module": f"{f['root']}/nope.py:build"}, ("not found", "nope.py")),
    ("no colon", lambda f: {"module": str(f["net"])}, ("FILE.py:FACTORY",)),
    ("not .py", lambda f: {"module": f"{f['w']}:build"}, (".py",)),
    ("syntax error", lambda f: {"module": f"{f['syntax']}:build"}, ("syntax.py", "line 1")),
    ("import raises", lambda f: {"module": f"{f['raises']}:build"}, ("cannot import here",)),
    ("no such factory", lambda f: {"module": f"{f['net']}:biuld"}, ("no 'biuld'", "build")),
    ("not callable", lambda f: {"module": f"{f['net']}:VALUE"}, ("not a callable",)),
    (
        "factory raises",
        lambda f: {"module": f"{f['net']}:broken"},
        ("ValueError", "no such variant"),
    ),
    ("not a module", lambda f: {"module": f"{f['net']}:not_a_module"}, ("int", "nn.Module")),
    ("weights missing", lambda f: {"--weights": f"{f['root']}/nope.pt"}, ("not found",)),
    ("weights garbage", lambda f: {"--weights": str(f["garbage"])}, ("not a readable weights",)),
    ("checkpoint", lambda f: {"--weights": str(f["nested"])}, ("'state_dict'", "checkpoint")),
    ("not a state_dict", lambda f: {"--weights": str(f["epoch"])}, ("'epoch'", "int")),
    ("missing key", lambda f: {"--weights": str(f["missing"])}, ("missing key 'out.bias'",)),
    (
        "unexpected key",
        lambda f: {"--weights": str(f["unexpected"])},
        ("unexpected key 'extra.weight'",),
    ),
    (
        "shape mismatch",
        lambda f: {"--weights": str(f["shape"])},
        ("'fc.weight'", "[8, 5]", "[8, 4]"),
    ),
    ("other model", lambda f: {"--weights": str(f["other"])}, ("missing key", "unexpected key")),
    (
        "wrong input shape",
        lambda f: {"--input-shape": "5", "--data": None},
        ("fails on input", "[2, 5]"),
    ),
    ("image shape", lambda f: {"--input-shape": "3,8,8", "--data": None}, ("fails on input",)),
    ("labels count", lambda f: {"--labels": "a,b"}, ("2 labels", "logits [2, 2]", "[2, 3]")),
    ("labels twice", lambda f: {"--labels": "a,b,a"}, ("'a' is given twice",)),
    ("labels file", lambda f: {"--labels": "classes.txt"}, ("not found", "classes.txt")),
    ("two outputs", lambda f: {"module": f"{f['net']}:pair", "--weights": None}, ("tuple",)),
    ("untraceable", lambda f: {"module": f"{f['net']}:Branchy"}, ("`if x.sum() > 0:`", "net.py:")),
    ("data missing", lambda f: {"--data": f"{f['root']}/nope.npz"}, ("not found",)),
    ("data not npz", lambda f: {"--data": str(f["w"])}, (".npz",)),
    ("data no X", lambda f: {"--data": str(f["no_x_npz"])}, ("no array X", "features")),
    ("data shape", lambda f: {"--data": str(f["shape_npz"])}, ("[5]", "[4]")),
    ("data NaN", lambda f: {"--data": str(f["nan_npz"])}, ("sample 7", "NaN")),
    ("data range", lambda f: {"--data": str(f["big_npz"])}, ("sample 3", "float32 range")),
    ("batch of 1", lambda f: {"module": f"{f['net']}:PairsOnly"}, ("fails on input", "[1, 4]")),
    ("data labels", lambda f: {"--data": str(f["labels_npz"])}, ("label 9", "sample 0")),
    ("data names", lambda f: {"--data": str(f["names_npz"])}, ("'zebra'", "sample 2")),
    ("data zip", lambda f: {"--data": str(f["zip_npz"])}, ("cannot read .npz",)),
    ("mean length", lambda f: {"--mean": "0,1", "--std": "1,1"}, ("2 values", "4 features")),
    ("feature names", lambda f: {"--feature-names": "a,b"}, ("2 feature names", "4 features")),
]


@pytest.mark.parametrize(("case", "change", "needles"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(
    case: str,
    change: Callable[[dict[str, Path]], dict[str, str | None]],
    needles: tuple[str, ...],
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(base(files, **change(files))) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    for needle in needles:
        assert needle in err, err
    assert not (files["root"] / "out").exists()


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"--input-shape": "3,32"}, "C,H,W"),
        ({"--input-shape": "0"}, "--input-shape must be >= 1"),
        ({"--input-shape": "a,b,c"}, "--input-shape"),
        ({"--mean": "0.5,x", "--std": "1"}, "--mean"),
        ({"--mean": "nan", "--std": "1"}, "finite"),
        ({"--pixel-scale": "-1"}, "--pixel-scale must be > 0"),
        ({"--resize": "cubic"}, "--resize"),
        ({"--verify-samples": "1"}, "--verify-samples must be >= 2"),
        ({"--std": "0", "--mean": "0"}, "--std must be > 0"),
        ({"--mean": "0.5"}, "--mean and --std go together"),
    ],
)
def test_bad_option_is_refused_before_any_import(
    change: dict[str, str], needle: str, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(base(files, **change))
    except SystemExit as exc:  # argparse's own errors (a value it cannot parse)
        code = int(str(exc.code))
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert needle in err, err
    assert not (files["root"] / "out").exists()


def test_a_module_the_onnx_exporter_cannot_convert(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = base(files, module=f"{files['net']}:Eig", **{"--weights": None})
    assert main([*args, "--verify-samples", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "torch.onnx.export cannot export the model" in err and "aten.linalg_eig" in err
    assert "\x1b" not in err
    assert not (files["root"] / "out" / "model.onnx").exists()


def test_the_cli_default_sample_count_is_the_api_default() -> None:
    from training.commands.export_module_options import VERIFY_SAMPLES
    from training.own_model import VERIFY_SAMPLES as API_DEFAULT

    assert VERIFY_SAMPLES == API_DEFAULT


def test_verify_module_options_need_module(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model = files["root"] / "model.onnx"
    model.write_bytes(b"not checked before the options")
    assert main(["verify", str(model), "--weights", str(files["w"])]) == 2
    err = capsys.readouterr().err
    assert "--weights is for --module" in err
    assert main(["verify", str(model), "--verify-samples", "9"]) == 2
    assert "--verify-samples is for --module" in capsys.readouterr().err
    code = main(["verify", str(model), "--module", f"{files['net']}:build", "--checkpoint", "c.pt"])
    assert code == 2
    assert "--checkpoint is for checkpoints" in capsys.readouterr().err


def test_verify_module_on_a_file_without_card(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model = files["root"] / "model.onnx"
    model.write_bytes(b"\x08\x07 definitely not protobuf \xff" * 4)
    assert main(["verify", str(model), "--module", f"{files['net']}:build"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.onnx" in err

"""The README's journeys end to end: a real CSV and an image folder through train, export,
verify and the service, and bad input on each new path (one line, exit 2, nothing written)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from example_datasets import digits_folder, penguins_csv
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from training import cli
from training.checkpoint import load_checkpoint
from training.data import load_file_data
from training.onnx_graph import ort_session


def exit_code(argv: list[str]) -> int:
    """``cli.main``'s status; argparse's own refusals (a bad choice) exit through SystemExit."""
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def client_for(model: Path) -> TestClient:
    return TestClient(create_app(Settings(model_path=model)))  # type: ignore[call-arg]


@pytest.mark.slow
def test_penguins_csv_trains_exports_verifies_and_serves_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = penguins_csv(tmp_path)
    out = tmp_path / "run"
    argv = ["all", "--dataset", str(data), "--label-column", "species", "--missing", "mean"]
    assert cli.main([*argv, "--out", str(out), "--quiet"]) == 0
    verify = json.loads((out / "verify.json").read_text())
    assert verify["passed"] and verify["parity"]["accuracy"] >= 0.9
    card = json.loads((out / "card.json").read_text())
    assert card["labels"] == ["Adelie", "Chinstrap", "Gentoo"]

    # Every row of the file, missing cells sent as null, by feature name: the service's
    # answer equals ONNX Runtime on training's own encoding of that row.
    ckpt = load_checkpoint(out / "checkpoint.pt")
    encoded, labels = load_file_data(str(data), "species", ckpt)
    session = ort_session(str(out / "model.onnx"))
    want = session.run(["probabilities"], {"input": encoded})[0]
    names = [f["name"] for f in card["input"]["tabular"]["features"]]
    with open(data, newline="") as fh:
        rows = list(csv.DictReader(fh))
    with client_for(out / "model.onnx") as client:
        for i, row in enumerate(rows):
            features = {n: _json_value(row[n]) for n in names}
            answer = client.post("/predict", json={"features": features})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            got = np.array(list(body["probabilities"].values()))
            assert np.max(np.abs(got - want[i])) <= 1e-6
            assert body["label"] == card["labels"][int(want[i].argmax())]
        nulls = {n: None for n in names}
        nulls |= {"island": "Biscoe", "bill_length_mm": 47.5, "sex": None}
        answer = client.post("/predict", json={"features": nulls}).json()
        assert answer["label"] in card["labels"]
        wrong = client.post("/predict", json={"features": {**nulls, "island": "Atlantis"}})
        assert wrong.status_code == 422
        assert wrong.json()["error"] == (
            "features.island: unknown category; allowed: 'Biscoe', 'Dream', 'Torgersen'"
        )
    assert np.mean(want.argmax(1) == labels) > 0.9

    # verify --data on the same file passes; on a file whose columns are named otherwise
    # it says so, in one line, and writes nothing.
    assert cli.main(["verify", str(out / "model.onnx"), "--data", str(data), "--quiet"]) == 0
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(data.read_text().replace("bill_length_mm", "bill_length", 1))
    (out / "verify.json").unlink()
    assert cli.main(["verify", str(out / "model.onnx"), "--data", str(renamed)]) == 2
    assert not (out / "verify.json").exists()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and (
        "the model's feature 'bill_length_mm' is not a column of the file" in err
    )


def _json_value(cell: str) -> object:
    if cell == "NA":
        return None
    try:
        return float(cell)
    except ValueError:
        return cell


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--label-column", "species"], "penguins.csv: line 5, column 'bill_length_mm': missing"),
        (
            ["--label-column", "species", "--missing", "drop", "--features", "island,bill"],
            "--features names 'bill' is not a column of the file",
        ),
        (
            ["--label-column", "species", "--missing", "mean", "--labels", "Adelie,Gentoo"],
            "line 278, column 'species': label 'Chinstrap' is not one of --labels",
        ),
        (["--label-column", "island", "--categorical", "nope"], "--categorical names 'nope'"),
    ],
)
def test_bad_csv_input_is_one_line_exit_2_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    data = penguins_csv(tmp_path)
    out = tmp_path / "run"
    assert exit_code(["train", "--dataset", str(data), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: " in err and message in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("damage", "args", "message"),
    [
        (lambda root: None, ["--channels", "2"], "invalid choice: 2 (choose from 1, 3)"),
        (lambda root: None, ["--image-size", "0,8"], "--image-size must be >= 1"),
        (
            lambda root: (root / "3" / "0003.png").write_bytes(b"\x89PNG\r\n\x1a\n broken"),
            [],
            "0003.png: the PNG data is corrupt or truncated",
        ),
        (
            lambda root: (root / "3" / "0003.png").write_bytes(b"GIF89a"),
            [],
            "0003.png: not a PNG or JPEG image",
        ),
    ],
)
def test_bad_image_folder_is_one_line_exit_2_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage, args: list[str], message: str
) -> None:  # type: ignore[no-untyped-def]
    root = digits_folder(tmp_path / "png", limit=40)
    damage(root)
    out = tmp_path / "run"
    assert exit_code(["train", "--dataset", str(root), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: " in err and message in err
    assert not out.exists()


@pytest.mark.slow
def test_png_folder_trains_a_cnn_and_a_png_upload_equals_its_tensor(tmp_path: Path) -> None:
    root = digits_folder(tmp_path / "png", scale=2)  # 1797 files, 16x16 gray, 10 folders
    out = tmp_path / "run"
    argv = ["all", "--dataset", str(root), "--widths", "8,16", "--epochs", "8", "--quiet"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["input"]["image"]["files"]["mode"] == "L"
    assert card["labels"] == [str(d) for d in range(10)]
    verify = json.loads((out / "verify.json").read_text())
    assert verify["passed"] and verify["parity"]["accuracy"] >= 0.8
    ckpt = load_checkpoint(out / "checkpoint.pt")
    tensors, labels = load_file_data(str(root), None, ckpt)  # decoded as training decodes
    files = sorted(root.glob("*/*.png"))
    picked = [files[i] for i in range(0, len(files), 97)]
    with client_for(out / "model.onnx") as client:
        for path in picked:
            data = path.read_bytes()
            index = files.index(path)
            by_tensor = client.post("/predict", json={"image": tensors[index].tolist()}).json()
            raw = client.post("/predict", content=data, headers={"content-type": "image/png"})
            form = client.post("/predict", files={"file": (path.name, data, "image/png")})
            assert raw.status_code == form.status_code == 200, raw.text
            want = np.array(list(by_tensor["probabilities"].values()))
            for answer in (raw.json(), form.json()):
                got = np.array(list(answer["probabilities"].values()))
                assert np.max(np.abs(got - want)) <= 1e-6
                assert answer["label"] == by_tensor["label"]
        bad = client.post("/predict", content=b"GIF89a", headers={"content-type": "image/png"})
        assert bad.status_code == 415 and bad.json() == {"error": "image: not a PNG or JPEG image"}
    assert len(labels) == len(files)

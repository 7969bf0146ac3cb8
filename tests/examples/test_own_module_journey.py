"""The README's own-module journey, run as written (fewer epochs), then served."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from service.settings import Settings
from training.onnx_graph import ort_session

REPO = Path(__file__).resolve().parents[2]


def readme_commands() -> list[list[str]]:
    """The training-side commands of the README's "Your own nn.Module" code block."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Your own nn.Module", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    lines = block.group(1).replace("\\\n", " ").splitlines()
    commands = []
    for line in lines:
        words = shlex.split(line, comments=True)
        if words and words[0] == ".venv/bin/python":
            commands.append(words)
    return commands


@pytest.mark.slow
def test_readme_own_module_commands_work(tmp_path: Path) -> None:
    commands = readme_commands()
    assert [c[1] for c in commands] == ["examples/own_module/train.py", "-m", "-m"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for words in commands:
        args = [sys.executable, *(w.replace("artifacts/own", str(tmp_path)) for w in words[1:])]
        if words[1].endswith("train.py"):
            args += ["--epochs", "2"]
        done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "verify.json").read_text())["passed"] is True

    body = json.loads((tmp_path / "request.json").read_text())
    image = np.asarray(Image.open(tmp_path / "sample.png").convert("RGB"), np.float32)
    # The PNG holds exactly the pixels of the request's tensor (x 255).
    np.testing.assert_array_equal(image.transpose(2, 0, 1) / 255, np.float32(body["image"]))

    path = tmp_path / "model.onnx"
    x = np.asarray(body["image"], np.float32)[None]
    want = ort_session(str(path)).run(["probabilities"], {"input": x})[0][0]
    with TestClient(create_app(Settings(model_path=path))) as client:  # type: ignore[call-arg]
        answer = client.post("/predict", json=body).json()
    probs = np.asarray(list(answer["probabilities"].values()), np.float32)
    np.testing.assert_array_equal(probs, want)
    assert answer["label"] == str(int(want.argmax()))

"""``python -m service``: one-line refusals, startup under uvicorn, non-root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from conftest import REPO, free_port, start_service, stop, wait_ready


def run_service(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "MODEL_PATH"}
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=REPO,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("model", "extra", "reason"),
    [
        ("hash_mismatch.onnx", {}, "differs from the card"),
        ("batchnorm.onnx", {}, "error: 1 BatchNormalization node(s) left in the graph"),
        ("wrong_golden.onnx", {}, "does not reproduce"),
        ("corrupt.onnx", {}, "is not an ONNX model"),
        (None, {}, "error: MODEL_PATH is not set"),
        ("image.onnx", {"API_TOKEN": "short"}, "error: API_TOKEN"),
    ],
)
def test_refusals_exit_2_with_one_line(
    model_dir: Path, model: str | None, extra: dict[str, str], reason: str
) -> None:
    env = {**extra, **({"MODEL_PATH": str(model_dir / model)} if model else {})}
    result = run_service(env, "--port", str(free_port()))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert reason in lines[0]
    assert "Traceback" not in result.stderr


def test_serves_under_uvicorn(live_image: str) -> None:
    assert httpx.get(f"{live_image}/health/ready").json() == {"ready": True}
    grid = [[0.0] * 8 for _ in range(8)]
    response = httpx.post(f"{live_image}/predict", json={"image": grid})
    assert response.status_code == 200
    assert "server" not in response.headers  # no version banner


@pytest.mark.slow
def test_several_workers(model_dir: Path) -> None:
    port = free_port()
    proc = start_service(model_dir / "image.onnx", port, env={"WORKERS": "2"})
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}", timeout=60)
        for _ in range(4):
            assert httpx.get(f"http://127.0.0.1:{port}/v2/models/digits").status_code == 200
    finally:
        stop(proc)


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to the 'nobody' user")
def test_runs_as_non_root_with_a_read_only_model(model_dir: Path) -> None:
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "import service.app"], cwd=REPO, user=65534, capture_output=True
        ).returncode
    except PermissionError:
        probe = -1
    if probe != 0:
        pytest.skip("this interpreter is not readable by 'nobody' here (the image tests it)")
    folder = Path(tempfile.mkdtemp())
    try:
        folder.chmod(0o755)
        model = folder / "model.onnx"
        shutil.copy(model_dir / "image.onnx", model)
        model.chmod(0o444)
        port = free_port()
        proc = start_service(model, port, user=65534)
        try:
            wait_ready(proc, f"http://127.0.0.1:{port}")
        finally:
            stop(proc)
    finally:
        shutil.rmtree(folder)

"""``python -m service``: one-line refusals, startup under uvicorn, non-root."""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from service_helpers import REAL_MODEL, REPO, free_port, start_service, stop, wait_ready


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


@pytest.fixture(scope="module")
def tampered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The committed digits model, tampered with as an attacker or a careless operator would."""
    import onnx
    import svc_models

    from bnfold.digest import read_card

    root = tmp_path_factory.mktemp("tampered")
    model = onnx.load(REAL_MODEL)
    card = read_card(REAL_MODEL.read_bytes())
    backdoor = svc_models.with_backdoor(model)  # the card and its digest kept as they were
    resealed = svc_models.with_card(backdoor, card)  # digest recomputed over the new graph
    lenient = svc_models.with_card(model, card, golden_tolerance=1e9)
    invalid = svc_models.with_card(model, card, reseal=False, name="bad name!")
    fifo = root / "fifo.onnx"
    os.mkfifo(fifo)
    return {
        "backdoor": svc_models.save(backdoor, root / "backdoor.onnx"),
        "resealed": svc_models.save(resealed, root / "resealed.onnx"),
        "lenient": svc_models.save(lenient, root / "lenient.onnx"),
        "invalid": svc_models.save(invalid, root / "invalid.onnx"),
        "fifo": fifo,
        "directory": root,
        "/dev/zero": Path("/dev/zero"),
    }


@pytest.mark.parametrize(
    ("model", "extra", "reason"),
    [
        ("backdoor", {}, "differs from the card's"),
        ("resealed", {"MODEL_DIGEST": "@version"}, "is not the pinned MODEL_DIGEST"),
        ("resealed", {"MODEL_DIGEST": "@digest"}, "is not the pinned MODEL_DIGEST"),
        ("lenient", {}, "invalid model card: golden_tolerance: Input should be less than"),
        ("invalid", {}, "invalid model card: name: String should match pattern"),
        ("fifo", {}, "is not a regular file"),
        ("/dev/zero", {}, "is not a regular file"),
        ("directory", {}, "is not a regular file"),
        ("resealed", {"MAX_MODEL_BYTES": "4096"}, "more than MAX_MODEL_BYTES=4096"),
        ("resealed", {"MODEL_DIGEST": "xyz"}, "MODEL_DIGEST: String should match pattern"),
    ],
)
def test_tampered_or_unfit_model_files_exit_2_with_one_line(
    tampered: dict[str, Path], model: str, extra: dict[str, str], reason: str
) -> None:
    from bnfold.digest import read_card

    card = read_card(REAL_MODEL.read_bytes())  # the legitimate export's
    pins = {"@version": card.version, "@digest": card.digest}
    env = {k: pins.get(v, v) for k, v in extra.items()}
    start = time.monotonic()
    result = run_service({"MODEL_PATH": str(tampered[model]), **env}, "--port", str(free_port()))
    assert time.monotonic() - start < 30  # a FIFO used to hang startup forever
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert reason in lines[0]


def test_a_resealed_backdoor_passes_every_check_but_the_pin(tampered: dict[str, Path]) -> None:
    # Why MODEL_DIGEST exists: whoever can write the file can recompute its digest, and
    # the golden samples (dark corner pixels) do not trigger the backdoor.
    from bnfold.digest import read_card
    from service.runtime import ModelLoadError, ModelRuntime

    runtime = ModelRuntime.load(tampered["resealed"])
    x = np.zeros((1, 1, 8, 8), np.float32)
    x[0, 0, 0, 0] = 9.0
    assert runtime.run(x)[1][0].argmax() == 7
    honest = read_card(REAL_MODEL.read_bytes())
    assert runtime.version != honest.version
    with pytest.raises(ModelLoadError, match="is not the pinned MODEL_DIGEST"):
        ModelRuntime.load(tampered["resealed"], expected_digest=honest.version)
    assert ModelRuntime.load(REAL_MODEL, expected_digest=honest.digest).version == honest.version


def test_a_port_in_use_exits_2_with_one_line(model_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_service({"MODEL_PATH": str(model_dir / "image.onnx")}, "--port", str(port))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_too_few_open_files_for_max_connections_exits_2(model_dir: Path) -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    environ = {k: v for k, v in os.environ.items() if k != "MODEL_PATH"}
    result = subprocess.run(
        [sys.executable, "-m", "service", "--port", str(free_port())],
        cwd=REPO,
        env={**environ, "MODEL_PATH": str(model_dir / "image.onnx")},
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=low_limit,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: MAX_CONNECTIONS=512 needs 576 open files per worker, "
        "but this process may open 256 (ulimit -n)"
    ]


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

"""The startup reproducers of issue 11 (``hostile.py startup``): bad files, a taken port.

For a checkout's ``python -m service``: a FIFO and ``/dev/zero`` as MODEL_PATH, a
port in use, the default model with a backdoor made of Constant/Slice/Greater/Where
nodes (card kept), and its card edited (``golden_tolerance`` 1e9, an invalid
``name``) without re-sealing: exit status, stderr lines and seconds, or, when the
service starts, what it answers.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hostile import JSON, PORT, Service, http
from loadgen import REPO


def _cli(repo: Path, env: dict[str, str], timeout: float = 20) -> dict[str, Any]:
    environ = {**os.environ, "PYTHONPATH": str(repo), **env}

    def limit() -> None:  # /dev/zero must not take the machine's memory with it
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    start = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "service", "--port", env.get("PORT", str(PORT))],
            cwd=repo,
            env=environ,
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=limit,
        )
    except subprocess.TimeoutExpired:
        return {"exit": None, "outcome": f"still running after {timeout:g} s (killed)"}
    lines = result.stderr.strip().splitlines()
    return {
        "exit": result.returncode,
        "stderr_lines": len(lines),
        "first_line": lines[0][:110] if lines else "",
        "seconds": round(time.monotonic() - start, 1),
    }


def _served(repo: Path, model: Path) -> dict[str, Any]:
    """Starts the service on ``model``: ready (and what it answers) or its refusal."""
    try:
        service = Service(repo, {"MODEL_PATH": str(model)})
    except SystemExit:
        return _cli(repo, {"MODEL_PATH": str(model)})
    try:
        x = [[0] * 8 for _ in range(8)]
        x[0][0] = 9
        status, body = http("POST", "/predict", json.dumps({"image": x}).encode(), JSON)
        return {
            "started": True,
            "pixel00_9_label": json.loads(body)["label"] if status == 200 else status,
        }
    finally:
        service.close()


def startup(repo: Path) -> dict[str, Any]:
    import onnx

    sys.path.insert(0, str(REPO / "tests" / "service"))
    import svc_models

    model_path = repo / "models/digits/model.onnx"
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        fifo = folder / "fifo.onnx"
        os.mkfifo(fifo)
        out["fifo"] = _cli(repo, {"MODEL_PATH": str(fifo)}, timeout=15)
        out["/dev/zero"] = _cli(repo, {"MODEL_PATH": "/dev/zero"}, timeout=60)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = str(taken.getsockname()[1])
            out["port in use"] = _cli(repo, {"MODEL_PATH": str(model_path), "PORT": port})
        model = onnx.load(model_path)
        backdoor = folder / "backdoor.onnx"
        svc_models.save(svc_models.with_backdoor(model), backdoor)
        out["backdoor, card kept"] = _served(repo, backdoor)
        for name, edit in (
            ("golden_tolerance 1e9", {"golden_tolerance": 1e9}),
            ("name 3", {"name": 3}),
        ):
            copy = onnx.ModelProto()
            copy.CopyFrom(model)
            entry = next(p for p in copy.metadata_props if p.key == "bnfold.card")
            entry.value = json.dumps({**json.loads(entry.value), **edit})
            path = folder / f"edited-{len(out)}.onnx"
            svc_models.save(copy, path)
            out[f"card {name}, not resealed"] = _served(repo, path)
    return out

"""Host-side half of ``scripts/docker-smoke.sh``: inputs, expected answers and HTTP checks.

Runs in the project venv (numpy, onnx, onnxruntime; no torch, no HTTP library beyond urllib):

    smoke_client.py model MODEL            the service's startup checks (make default-model)
    smoke_client.py prepare MODEL OUTDIR   those checks, in-process predictions, bad models
    smoke_client.py wait URL TIMEOUT       poll a readiness URL, print the seconds it took
    smoke_client.py check BASE_URL OUTDIR  POST every sample to /predict and the OIP infer route
                                           and compare with the in-process answers

Exit status 0 on success, 1 on a failed check (one line on stderr saying what differed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bnfold.card import PROBABILITIES, ModelCard
from bnfold.digest import read_card

# The container's onnxruntime may be a different release from the venv's: allow rounding only.
ATOL = 1e-5


class CheckError(Exception):
    """A smoke check failed; the message is the one line to print."""


def _samples(card: ModelCard) -> list[tuple[str, np.ndarray]]:
    """Real inputs: the card's golden samples, plus a few scikit-learn digits if it is 8x8."""
    shape = card.input.sample_shape
    samples = [
        (f"golden {g.note}", np.asarray(g.input, np.float32).reshape(shape)) for g in card.golden
    ]
    if card.input.kind == "image" and tuple(shape[-2:]) == (8, 8) and int(np.prod(shape)) == 64:
        try:
            from sklearn.datasets import load_digits
        except ImportError:  # the serve-only venv has no scikit-learn: golden samples suffice
            return samples
        images = load_digits().images
        for index in (0, 1, len(images) - 1):
            x = images[index].astype(np.float32).reshape(shape)
            samples.append((f"sklearn digits[{index}]", x))
    return samples


def _predict_body(card: ModelCard, x: np.ndarray) -> dict[str, Any]:
    """The /predict request: an image as nested H x W rows (channels first if more than one)."""
    if card.input.kind == "image":
        image = x[0] if x.shape[0] == 1 else x
        return {"image": image.tolist()}
    return {"features": x.reshape(-1).tolist()}


def check_model(model_path: Path) -> None:
    """Run the service's own startup checks (hash = card, no BN left, golden samples) on a file."""
    from service.runtime import ModelLoadError, ModelRuntime

    try:
        runtime = ModelRuntime.load(model_path)
    except ModelLoadError as exc:
        raise CheckError(f"the service would refuse {model_path}: {exc}") from None
    checks = ", ".join(f"{k} {v}" for k, v in runtime.checks.items())
    size = model_path.stat().st_size
    print(f"{model_path} ('{runtime.name}', {size / 1024:.0f} KiB) passes the service's checks")
    print(f"  {checks}")


def prepare(model_path: Path, out: Path) -> None:
    """Check the model as the service does, then write requests, answers and bad models."""
    check_model(model_path)
    card = read_card(model_path.read_bytes())
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    cases = []
    for note, x in _samples(card):
        batch = x[np.newaxis]
        outputs = session.run([PROBABILITIES], {card.input.name: batch})
        probabilities = np.asarray(outputs[0])[0]
        cases.append(
            {
                "note": note,
                "predict": _predict_body(card, x),
                "infer": {
                    "inputs": [
                        {
                            "name": card.input.name,
                            "shape": list(batch.shape),
                            "datatype": "FP32",
                            "data": batch.reshape(-1).tolist(),
                        }
                    ]
                },
                "probabilities": probabilities.tolist(),
                "class_id": int(probabilities.argmax()),
                "label": card.labels[int(probabilities.argmax())],
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    expected = {"name": card.name, "labels": card.labels, "cases": cases}
    (out / "expected.json").write_text(json.dumps(expected))

    bad = out / "bad"
    bad.mkdir(exist_ok=True)
    (bad / "corrupt.onnx").write_bytes(b"this is not an ONNX file\n" * 40)
    # Same card, one weight changed: the hash (and the golden samples) no longer match the card.
    tampered = onnx.load(str(model_path))
    biggest = max(tampered.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    array = numpy_helper.to_array(biggest).copy()
    array.flat[0] += 1.0
    biggest.CopyFrom(numpy_helper.from_array(array, biggest.name))
    onnx.save(tampered, str(bad / "wrong-card.onnx"))
    # A valid ONNX model that bnfold did not export: no card at all.
    plain = onnx.load(str(model_path))
    del plain.metadata_props[:]
    onnx.save(plain, str(bad / "no-card.onnx"))
    for path in (bad, *bad.iterdir()):  # readable by the container's non-root user
        path.chmod(0o755 if path.is_dir() else 0o644)
    print(f"{len(cases)} samples, model '{card.name}', expected answers in {out / 'expected.json'}")


def _request(url: str, body: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")[:300]
        raise CheckError(f"{url}: HTTP {error.code}: {detail}") from None


def wait(url: str, timeout: float) -> None:
    """Poll ``url`` every 50 ms until it answers 200; print the seconds it took."""
    start = time.monotonic()
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    print(f"{time.monotonic() - start:.2f}")
                    return
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() - start > timeout:
            raise CheckError(f"{url} not ready after {timeout:.0f} s")
        time.sleep(0.05)


def _probabilities_from_predict(answer: Any, labels: list[str]) -> np.ndarray:
    """Probabilities from a /predict answer: a list in class order, or a {label: p} mapping."""
    if not isinstance(answer, dict) or PROBABILITIES not in answer:
        raise CheckError(f"/predict answer has no '{PROBABILITIES}': {str(answer)[:200]}")
    value = answer[PROBABILITIES]
    if isinstance(value, dict):
        return np.asarray([value[label] for label in labels], np.float64)
    return np.asarray(value, np.float64).reshape(-1)


def _probabilities_from_infer(answer: Any) -> np.ndarray:
    outputs = {o["name"]: o for o in answer.get("outputs", [])} if isinstance(answer, dict) else {}
    if PROBABILITIES not in outputs:
        raise CheckError(f"OIP answer has no '{PROBABILITIES}' output: {str(answer)[:200]}")
    return np.asarray(outputs[PROBABILITIES]["data"], np.float64).reshape(-1)


def _compare(route: str, note: str, got: np.ndarray, case: dict[str, Any]) -> float:
    want = np.asarray(case["probabilities"], np.float64)
    if got.shape != want.shape:
        raise CheckError(f"{route} [{note}]: {got.size} probabilities, expected {want.size}")
    error = float(np.max(np.abs(got - want)))
    if error > ATOL or int(got.argmax()) != case["class_id"]:
        raise CheckError(
            f"{route} [{note}]: class {int(got.argmax())} (max |Δp| {error:.2e}), "
            f"in-process ORT says class {case['class_id']}"
        )
    return error


def check(base: str, out: Path) -> None:
    """POST every prepared sample to both routes; the answers must equal the in-process ones."""
    expected = json.loads((out / "expected.json").read_text())
    name = expected["name"]
    model_info = None
    with contextlib.suppress(CheckError):  # metadata is optional here: infer is what matters
        model_info = _request(f"{base}/v2/models/{name}")
    if isinstance(model_info, dict):
        print(f"  GET  /v2/models/{name}: {json.dumps(model_info)[:160]}")
    worst = 0.0
    for case in expected["cases"]:
        answer = _request(f"{base}/predict", case["predict"])
        got = _probabilities_from_predict(answer, expected["labels"])
        worst = max(worst, _compare("/predict", case["note"], got, case))
        route = f"/v2/models/{name}/infer"
        answer = _request(f"{base}{route}", case["infer"])
        worst = max(worst, _compare(route, case["note"], _probabilities_from_infer(answer), case))
        print(f"  {case['note']:<36} -> class {case['class_id']} ({case['label']}): routes agree")
    count = len(expected["cases"])
    print(f"  {count} samples x 2 routes equal the in-process ORT answer (max |Δp| {worst:.1e})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("model")
    m.add_argument("model", type=Path)
    p = sub.add_parser("prepare")
    p.add_argument("model", type=Path)
    p.add_argument("out", type=Path)
    w = sub.add_parser("wait")
    w.add_argument("url")
    w.add_argument("timeout", type=float)
    c = sub.add_parser("check")
    c.add_argument("base")
    c.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "model":
            check_model(args.model)
        elif args.command == "prepare":
            prepare(args.model, args.out)
        elif args.command == "wait":
            wait(args.url, args.timeout)
        else:
            check(args.base.rstrip("/"), args.out)
    except CheckError as error:
        print(f"FAIL: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Image-file uploads (service/images.py through /predict): PNG/JPEG bodies, multipart files,
the same answer as the tensor, and every refusal."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import svc_models
from fastapi.testclient import TestClient
from PIL import Image
from service_helpers import make_settings

from bnfold.card import ImageFiles
from bnfold.imagefile import decode
from service.app import create_app

EXACT = ImageFiles(mode="L", scale=1 / 255, max_pixels=64)
RESIZING = ImageFiles(mode="L", resize="bilinear", scale=1 / 255, max_pixels=10_000)


def encoded(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def digit() -> np.ndarray:
    return (np.arange(64, dtype=np.uint8) * 4).reshape(8, 8)


def serve(tmp: Path, files: ImageFiles | None, root_path: str = "") -> TestClient:
    model, _ = svc_models.image_model(files=files)
    path = svc_models.save(model, tmp / "m.onnx")
    return TestClient(create_app(make_settings(path)), root_path=root_path)


@pytest.fixture(scope="module")
def exact(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with serve(tmp_path_factory.mktemp("exact"), EXACT) as client:
        yield client


def by_tensor(client: TestClient, tensor: np.ndarray, prefix: str = "") -> dict[str, object]:
    answer = client.post(f"{prefix}/predict", json={"image": tensor[0].tolist()})
    assert answer.status_code == 200
    return answer.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_file_gets_the_answer_of_its_tensor(exact: TestClient, fmt: str) -> None:
    data = encoded(digit(), fmt)
    tensor = decode(data, EXACT, 8, 8)
    want = by_tensor(exact, tensor)
    media = "image/png" if fmt == "PNG" else "image/jpeg"
    raw = exact.post("/predict", content=data, headers={"content-type": media})
    form = exact.post("/predict", files={"upload": ("x", data, media)})
    bare = exact.post("/predict", files={"f": ("x", data, "application/octet-stream")})
    for answer in (raw, form, bare):
        assert answer.status_code == 200, answer.text
        assert answer.json() == want
    # The oracle: the decoded tensor is pixel / 255 (PNG is lossless).
    if fmt == "PNG":
        np.testing.assert_array_equal(tensor[0], (digit() / 255).astype(np.float32))


def test_the_fastapi_route_answers_uploads_the_same(tmp_path: Path) -> None:
    data = encoded(digit())
    with serve(tmp_path, EXACT) as direct:
        fast = direct.post("/predict", content=data, headers={"content-type": "image/png"})
    with serve(tmp_path, EXACT, root_path="/api") as proxied:
        routed = proxied.post("/api/predict", content=data, headers={"content-type": "image/png"})
        form = proxied.post("/api/predict", files={"file": ("x.png", data, "image/png")})
    assert fast.status_code == routed.status_code == form.status_code == 200
    assert fast.content == routed.content == form.content


def test_a_resizing_model_resizes_as_its_card_says(tmp_path: Path) -> None:
    big = np.kron(digit(), np.ones((3, 2), dtype=np.uint8))  # 24 x 16
    data = encoded(big)
    with serve(tmp_path, RESIZING) as client:
        got = client.post("/predict", content=data, headers={"content-type": "image/png"})
        small = Image.fromarray(big).resize((8, 8), Image.Resampling.BILINEAR)
        tensor = (np.asarray(small, np.float64) / 255).astype(np.float32)[None]
        assert got.json() == by_tensor(client, tensor)


def test_the_pixel_cap_is_checked_before_decoding(tmp_path: Path) -> None:
    capped = ImageFiles(mode="L", resize="bilinear", scale=1 / 255, max_pixels=100)
    with serve(tmp_path, capped) as client:
        small = client.post(
            "/predict", content=encoded(digit()), headers={"content-type": "image/png"}
        )
        large = encoded(np.zeros((30, 30), np.uint8))
        answer = client.post("/predict", content=large, headers={"content-type": "image/png"})
    assert small.status_code == 200
    assert answer.status_code == 413
    assert answer.json() == {
        "error": "image: the image has 30x30 pixels, more than the limit of 100"
    }


def _multipart(parts: list[tuple[str, bytes, str]]) -> tuple[bytes, str]:
    boundary = "b0undary"
    chunks = []
    for name, data, media in parts:
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="f"\r\n'
            f"Content-Type: {media}\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error"),
    [
        (b"GIF89a...", "image/png", 415, "image: not a PNG or JPEG image"),
        (encoded(digit(), "JPEG"), "image/png", 415, "image: the data is a JPEG image, not PNG"),
        (encoded(digit())[:50], "image/png", 422, "image: the PNG data is corrupt or truncated"),
        (
            encoded(np.zeros((9, 8), np.uint8)),
            "image/png",
            422,
            "image: the image is 8x9 pixels (width x height); the model takes 8x8",
        ),
        (
            *_multipart([("a", encoded(digit()), "image/png"), ("b", b"x", "image/png")]),
            422,
            "multipart/form-data must hold exactly one file field",
        ),
        (
            *_multipart([("a", encoded(digit()), "text/plain")]),
            415,
            "the file field's Content-Type must be image/png or image/jpeg",
        ),
        (b"--nope", "multipart/form-data; boundary=b0undary", 400, "malformed multipart"),
        (b"x", "multipart/form-data", 400, "multipart/form-data needs a boundary parameter"),
        (
            b"x",
            "text/plain",
            415,
            "Content-Type must be application/json, image/png, image/jpeg or multipart/form-data",
        ),
    ],
)
def test_refusals(
    exact: TestClient, body: bytes, content_type: str, status: int, error: str
) -> None:
    answer = exact.post("/predict", content=body, headers={"content-type": content_type})
    assert answer.status_code == status
    message = answer.json()["error"]
    assert message.startswith(error) and "\n" not in message


def test_models_without_files_refuse_uploads(image: TestClient, tabular: TestClient) -> None:
    for client in (image, tabular):
        answer = client.post(
            "/predict", content=encoded(digit()), headers={"content-type": "image/png"}
        )
        assert answer.status_code == 415
        assert answer.json()["error"].startswith("this model takes no image files")


def test_the_byte_limit_holds_for_files(tmp_path: Path) -> None:
    model, _ = svc_models.image_model(files=EXACT)
    path = svc_models.save(model, tmp_path / "m.onnx")
    with TestClient(create_app(make_settings(path, max_body_bytes=1024))) as client:
        answer = client.post(
            "/predict", content=b"\x89PNG" + b"0" * 2000, headers={"content-type": "image/png"}
        )
        assert answer.status_code == 413


def test_openapi_documents_file_bodies_for_a_files_model(
    exact: TestClient, image: TestClient
) -> None:
    content = exact.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"][
        "content"
    ]
    assert {"application/json", "image/png", "image/jpeg", "multipart/form-data"} <= set(content)
    assert "Pillow mode L" in content["image/png"]["schema"]["description"]
    plain = image.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert set(plain) == {"application/json"}

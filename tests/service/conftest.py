"""Fixtures: tiny bnfold models on disk, settings and TestClients for them."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent))

import svc_models
from service_helpers import REPO, free_port, make_settings, start_service, stop, wait_ready

from bnfold.card import ModelCard
from service.app import create_app


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every fixture model, written once per session."""
    root = tmp_path_factory.mktemp("models")
    tab, tab_card = svc_models.tabular_model()
    img, _ = svc_models.image_model()
    svc_models.save(tab, root / "tabular.onnx")
    svc_models.save(img, root / "image.onnx")
    other, _ = svc_models.tabular_model(seed=7)
    svc_models.save(
        svc_models.with_card(other, tab_card, reseal=False), root / "hash_mismatch.onnx"
    )
    svc_models.save(svc_models.with_batchnorm(tab, tab_card), root / "batchnorm.onnx")
    wrong = [g.model_copy(update={"probabilities": [1.0, 0.0, 0.0]}) for g in tab_card.golden]
    svc_models.save(svc_models.with_card(tab, tab_card, golden=wrong), root / "wrong_golden.onnx")
    svc_models.save(svc_models.without_card(tab), root / "no_card.onnx")
    (root / "corrupt.onnx").write_bytes(b"\x08\x07this is not protobuf\xff\xfe" * 8)
    return root


@pytest.fixture(scope="session")
def tabular_card() -> ModelCard:
    return svc_models.tabular_model()[1]


@pytest.fixture(scope="session")
def image_card() -> ModelCard:
    return svc_models.image_model()[1]


@pytest.fixture()
def tabular(model_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(model_dir / "tabular.onnx"))) as client:
        yield client


@pytest.fixture()
def image(model_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(model_dir / "image.onnx"))) as client:
        yield client


@pytest.fixture(scope="session")
def live_image(model_dir: Path) -> Iterator[str]:
    """The service under uvicorn on 127.0.0.1, serving the image fixture model."""
    port = free_port()
    proc = start_service(model_dir / "image.onnx", port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url)
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def monitored_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real exports with a drift monitor: the committed digits checkpoint, and a wine MLP
    with random weights (the exporter needs torch; the service under test does not)."""
    sys.path.insert(0, str(REPO / "tests" / "training"))
    from training_checkpoints import make_checkpoint

    from training.export import export_checkpoint

    root = tmp_path_factory.mktemp("monitored")
    export_checkpoint(REPO / "models" / "digits" / "checkpoint.pt", root / "digits")
    wine = make_checkpoint(root / "wine.pt", "wine", "mlp", (16, 8))
    export_checkpoint(wine, root / "wine")
    return root


@pytest.fixture()
def digits_monitored(monitored_dir: Path) -> Iterator[TestClient]:
    # Every request feeds the window (MONITOR_SHARE=1): the tests count its samples.
    path = monitored_dir / "digits" / "model.onnx"
    app = create_app(make_settings(path, monitor_window=64, monitor_share=1.0))
    with TestClient(app) as client:
        yield client

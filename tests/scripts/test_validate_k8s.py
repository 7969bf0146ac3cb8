"""scripts/validate_k8s.py: the shipped manifests pass; a broken copy fails."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "deploy" / "kubernetes"


def _validator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("validate_k8s", REPO / "scripts/validate_k8s.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_manifests_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert _validator().main([str(MANIFESTS)]) == 0
    assert "Deployment/bnfold" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("runAsNonRoot: true", "runAsNonRoot: false"),  # must not run as root
        ("/health/ready", "/health/readyy"),  # a probe on a route the service lacks
        ("path: /health/live", "path: /predict"),  # a route, but not one that answers GET
        ("path: /health/live", "path: /docs/oauth2"),  # a prefix of a route, not a route
        ("containerPort: 8000", "containerPort: 8001"),  # not the port the image listens on
        ("terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 20"),  # drain cut
    ],
)
def test_a_broken_deployment_fails(tmp_path: Path, old: str, new: str) -> None:
    copy = tmp_path / "kubernetes"
    shutil.copytree(MANIFESTS, copy)
    deployment = copy / "deployment.yaml"
    text = deployment.read_text()
    assert old in text
    deployment.write_text(text.replace(old, new, 1))
    assert _validator().main([str(copy)]) == 1

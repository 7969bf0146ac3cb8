"""The browser-facing routes (service/ui.py): pages and their files served by the service
itself, the docs' token policy (DOCS_ACCESS), the bearer scheme in OpenAPI, /model/card.md."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import pytest
from fastapi.testclient import TestClient
from service_helpers import make_settings

from bnfold.card import ModelCard
from bnfold.card_markdown import card_markdown
from service.app import create_app
from service.ui import STATIC

TOKEN = "t0k3n-" + "y" * 20
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# An SVG's namespace is an identifier, never fetched.
_NOT_FETCHED = ("http://www.w3.org/2000/svg",)


class _Refs(HTMLParser):
    """Every URL an HTML page makes the browser load or follow."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "action", "data", "poster") and value:
                self.urls.append(value)


def refs(html: str) -> list[str]:
    parser = _Refs()
    parser.feed(html)
    return parser.urls


def _client(path: Path, **settings: object) -> TestClient:
    return TestClient(create_app(make_settings(path, **settings)))


@pytest.mark.parametrize(
    ("page", "needed"),
    [
        ("/", ["static/ui/demo.js", "static/ui/demo.css"]),
        ("/docs", ["static/swagger/swagger-ui-bundle.js", "static/swagger/swagger-ui.css"]),
    ],
)
def test_pages_load_every_file_from_the_service(
    image: TestClient, page: str, needed: list[str]
) -> None:
    response = image.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    urls = refs(response.text)
    assert set(needed) <= set(urls)
    for url in urls:
        assert not re.match(r"^([a-z][a-z0-9+.-]*:|//)", url), f"{page} references {url}"
        asset = image.get(urljoin(f"http://testserver{page}", url))
        assert asset.status_code == 200, url
        assert len(asset.content) > 100, url
    bundle = image.get("/static/swagger/swagger-ui-bundle.js")
    assert "javascript" in bundle.headers["content-type"]
    assert b"SwaggerUIBundle" in bundle.content


def test_own_page_files_name_no_other_host() -> None:
    for path in STATIC.iterdir():
        text = path.read_text()
        for kept in _NOT_FETCHED:
            text = text.replace(kept, "")
        found = re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}", text)
        assert not found, f"{path.name}: {found}"


def test_swagger_stylesheet_loads_nothing_from_elsewhere(image: TestClient) -> None:
    css = image.get("/static/swagger/swagger-ui.css").text
    for url in re.findall(r"url\(\s*['\"]?([^'\")]+)", css):
        assert url.startswith("data:"), url


def test_fastapis_cdn_pages_are_gone(image: TestClient) -> None:
    assert "cdn.jsdelivr" not in image.get("/docs").text
    assert image.get("/redoc").status_code == 404
    assert image.get("/docs/oauth2-redirect").status_code == 404


def test_model_card_markdown(image: TestClient, image_card: ModelCard) -> None:
    response = image.get("/model/card.md")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    assert response.text == card_markdown(image_card)
    assert image_card.digest in response.text
    spec = image.get("/openapi.json").json()
    assert "text/markdown" in spec["paths"]["/model/card.md"]["get"]["responses"]["200"]["content"]


def test_no_security_scheme_without_a_token(image: TestClient) -> None:
    spec = image.get("/openapi.json").json()
    assert "securitySchemes" not in spec.get("components", {})
    assert "security" not in spec


@pytest.mark.parametrize("access", ["token", "public"])
def test_token_policy_for_pages_schema_and_api(model_dir: Path, access: str) -> None:
    with _client(model_dir / "image.onnx", api_token=TOKEN, docs_access=access) as client:
        for path in ("/", "/docs", "/static/ui/demo.js", "/static/swagger/swagger-ui.css"):
            assert client.get(path).status_code == 200, path
        for path in ("/model", "/model/card.md", "/metrics"):
            assert client.get(path).status_code == 401, path
        schema = client.get("/openapi.json")
        assert schema.status_code == (401 if access == "token" else 200)
        spec = client.get("/openapi.json", headers=AUTH).json()
    # Swagger's "Authorize" takes a bearer token: the scheme is declared and applies to the
    # API, not to the probes.
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "The service's API_TOKEN",
    }
    assert spec["security"] == [{"bearerAuth": []}]
    assert spec["paths"]["/health/ready"]["get"]["security"] == []
    assert spec["paths"]["/v2/health/live"]["get"]["security"] == []
    assert "security" not in spec["paths"]["/predict"]["post"]  # the global requirement


def test_docs_access_defaults_to_token(model_dir: Path) -> None:
    assert make_settings(model_dir / "image.onnx").docs_access == "token"


async def _raw_get(app: object, path: str) -> tuple[int, bytes]:
    """A GET with exactly this path, as a raw client could send it (no URL normalization)."""
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)  # type: ignore[operator]
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")  # type: ignore[misc]
    return int(start["status"]), body  # type: ignore[call-overload]


@pytest.mark.parametrize(
    "path", ["/static/../model", "/static/ui/../../model", "/static/swagger/../../model/card.md"]
)
def test_public_prefix_does_not_open_the_api(model_dir: Path, path: str) -> None:
    with _client(model_dir / "image.onnx", api_token=TOKEN) as client:
        guarded, _ = client.portal.call(_raw_get, client.app, "/model")  # type: ignore[union-attr]
        status, body = client.portal.call(_raw_get, client.app, path)  # type: ignore[union-attr]
    assert guarded == 401
    assert status == 404
    assert b"card" not in body and b"digits" not in body


def test_static_files_stay_inside_their_folder(image: TestClient) -> None:
    for path in ("/static/ui/../ui.py", "/static/ui/%2e%2e/ui.py", "/static/swagger/../core.py"):
        response = image.get(path)
        assert response.status_code == 404, path
        assert b"import" not in response.content

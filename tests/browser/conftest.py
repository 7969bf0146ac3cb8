"""A real headless browser (Debian's chromium, driven by Playwright) against the service under
uvicorn on 127.0.0.1.

Every page runs with a guard: a request to anything but the service under test is aborted and
fails the test, and so does a script, stylesheet, image or font that does not load, an uncaught
script error or a Content-Security-Policy refusal. Screenshots go to ``artifacts/ci/`` (CI keeps
them; ``BNFOLD_ARTIFACTS`` moves them). Without chromium the tests are skipped, except under CI
(``CI`` set), where that is a failure: ``make test`` installs it (``make chromium``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

import svc_models
from browser_support import CHROMIUM, CHROMIUM_ARGS, REPO
from service_helpers import free_port, start_service, stop, wait_ready

from bnfold.card import CategoricalFeature, ImageFiles, InputSpec, NumericFeature, TabularSpec

_ASSETS = frozenset({"document", "script", "stylesheet", "image", "font", "media"})
_REFUSED = ("Refused to load", "Refused to apply", "Refused to execute", "Refused to connect")


@pytest.fixture(scope="module")  # stopped after each module: its loop would outlive the folder
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: `make chromium` installs Debian's chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    # launch() gives the browser a fresh temporary profile of its own, removed at close.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Guard:
    """What a page did that it must not: requests elsewhere, failed assets, script errors."""

    origin: str
    problems: list[str] = field(default_factory=list)
    api: list[tuple[str, int]] = field(default_factory=list)  # (url, status) of fetch() calls

    def attach(self, page: Any) -> None:
        def route(r: Any) -> None:
            if r.request.url.startswith(self.origin + "/"):
                r.continue_()
            else:
                self.problems.append(f"request outside the service: {r.request.url}")
                r.abort()

        page.route("**/*", route)
        page.on("pageerror", lambda exc: self.problems.append(f"script error: {exc}"))
        page.on("console", self._console)
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _console(self, message: Any) -> None:
        text = message.text
        # "Failed to load resource" is how Chromium logs any 4xx, including the API's
        # expected 401/404; assets are judged by their responses instead.
        if message.type == "error" and not text.startswith("Failed to load resource"):
            self.problems.append(f"console error: {text}")
        elif any(text.startswith(r) for r in _REFUSED):
            self.problems.append(f"refused by the page's policy: {text}")

    def _failed(self, request: Any) -> None:
        if request.url.startswith(self.origin + "/"):
            self.problems.append(f"{request.resource_type} failed: {request.url}")

    def _response(self, response: Any) -> None:
        kind = response.request.resource_type
        if kind in _ASSETS and response.status >= 400:
            self.problems.append(f"{kind} {response.url} answered {response.status}")
        elif kind in ("fetch", "xhr"):
            self.api.append((response.url.removeprefix(self.origin), response.status))


@pytest.fixture()
def open_page(browser: Any) -> Iterator[Callable[[str, str], tuple[Any, Guard]]]:
    """``open_page(origin, path)``: a fresh page on the service, guarded; the test fails if
    the guard saw anything."""
    contexts: list[Any] = []
    guards: list[Guard] = []

    def open_(origin: str, path: str = "/") -> tuple[Any, Guard]:
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        contexts.append(context)
        page = context.new_page()
        guard = Guard(origin)
        guard.attach(page)
        guards.append(guard)
        page.goto(origin + path, wait_until="load")
        return page, guard

    yield open_
    for context in contexts:
        context.close()
    problems = [p for g in guards for p in g.problems]
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The committed digits CNN, plus small tabular and image models whose cards exercise the
    page: numeric features, a categorical one with fills, an image model that takes files."""
    root = tmp_path_factory.mktemp("browser-models")
    tab, tab_card = svc_models.tabular_model()
    img, img_card = svc_models.image_model()
    mixed = InputSpec(
        shape=[-1, 4],
        kind="tabular",
        description="two measurements and an island",
        tabular=TabularSpec(
            features=[
                NumericFeature(name="bill length (mm)", fill=43.9),
                NumericFeature(name="body_mass_g"),
                CategoricalFeature(name="island", categories=["Biscoe", "Dream"], fill="Dream"),
            ],
            missing="mean",
        ),
    )
    files = ImageFiles(mode="L", resize="bilinear", scale=16 / 255)
    assert img_card.input.image is not None
    image_files = img_card.input.model_copy(
        update={"image": img_card.input.image.model_copy(update={"files": files})}
    )
    # The committed checkpoint exported by this version: its card has the drift monitor's
    # reference (the exporter needs torch; the service under test does not).
    from training.export import export_checkpoint

    export_checkpoint(REPO / "models" / "digits" / "checkpoint.pt", root / "digits-monitored")
    return {
        "digits": REPO / "models" / "digits" / "model.onnx",
        "digits_monitored": root / "digits-monitored" / "model.onnx",
        "tabular": svc_models.save(tab, root / "tabular.onnx"),
        "mixed": svc_models.save(
            svc_models.with_card(tab, tab_card, input=mixed), root / "mixed.onnx"
        ),
        "image_files": svc_models.save(
            svc_models.with_card(img, img_card, input=image_files), root / "image_files.onnx"
        ),
    }


@pytest.fixture(scope="session")
def service(models: dict[str, Path]) -> Iterator[Callable[..., str]]:
    """``service(model, **env)``: the origin of ``python -m service`` serving that model with
    those settings, started once per session and combination."""
    running: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[Any, str]] = {}

    def serve(model: str, **env: str) -> str:
        key = (model, tuple(sorted(env.items())))
        if key not in running:
            port = free_port()
            proc = start_service(models[model], port, env={k.upper(): v for k, v in env.items()})
            origin = f"http://127.0.0.1:{port}"
            running[key] = (proc, origin)
            wait_ready(proc, origin)
        return running[key][1]

    yield serve
    for proc, _ in running.values():
        stop(proc)

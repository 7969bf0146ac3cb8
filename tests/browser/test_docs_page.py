"""``/docs`` in a real browser: Swagger UI from the service's own files, no other host, and
usable with ``API_TOKEN`` under both ``DOCS_ACCESS`` policies (``Authorize``, "Try it out")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from browser_support import TOKEN, screenshot
from playwright.sync_api import expect

OpenPage = Callable[..., Any]
MODEL_OP = "#operations-Model-model_model_get"


def _operations(page: Any) -> None:
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    assert page.locator(".swagger-ui .opblock").count() >= 8
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("bnfold prediction service")


def _try_get_model(page: Any) -> str:
    """Expand GET /model, "Try it out", "Execute"; the status Swagger shows."""
    operation = page.locator(MODEL_OP)
    operation.locator(".opblock-summary").click()
    operation.locator(".try-out__btn").click()
    with page.expect_response(lambda r: r.url.endswith("/model")) as answered:
        operation.locator(".execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    expect(status).to_have_text(str(answered.value.status))
    return status.inner_text()


def test_docs_without_a_token(service: Callable[..., str], open_page: OpenPage) -> None:
    page, guard = open_page(service("digits"), "/docs")
    _operations(page)
    assert page.locator(".swagger-ui .btn.authorize").count() == 0  # nothing to authorize
    assert _try_get_model(page) == "200"
    assert ("/openapi.json", 200) in guard.api
    screenshot(page, "docs.png", full_page=False)


def test_docs_with_a_public_schema_and_authorize(
    service: Callable[..., str], open_page: OpenPage
) -> None:
    page, _ = open_page(service("digits", api_token=TOKEN, docs_access="public"), "/docs")
    _operations(page)
    assert page.locator("#token-form").is_hidden()
    assert _try_get_model(page) == "401"  # not authorized yet
    page.locator(".swagger-ui .btn.authorize").first.click()
    modal = page.locator(".swagger-ui .modal-ux")
    modal.locator("input").fill(TOKEN)
    modal.locator(".auth-btn-wrapper .btn.authorize").click()
    modal.locator(".btn-done").click()
    with page.expect_request(lambda r: r.url.endswith("/model")) as sent:
        page.locator(MODEL_OP).locator(".execute").click()
    assert sent.value.headers["authorization"] == f"Bearer {TOKEN}"
    expect(
        page.locator(MODEL_OP).locator(".live-responses-table tbody .response-col_status").first
    ).to_have_text("200")
    page.locator(MODEL_OP).scroll_into_view_if_needed()
    screenshot(page, "docs-token-public.png", full_page=False)


@pytest.mark.parametrize("given", ["wrong-token-" + "q" * 12, TOKEN])
def test_docs_with_the_schema_behind_the_token(
    service: Callable[..., str], open_page: OpenPage, given: str
) -> None:
    page, guard = open_page(service("digits", api_token=TOKEN, docs_access="token"), "/docs")
    expect(page.locator("#token-form")).to_be_visible()
    assert ("/openapi.json", 401) in guard.api
    page.locator("#token").fill(given)
    page.locator("#token-form button").click()
    if given != TOKEN:
        expect(page.locator("#error")).to_have_text("The service refused this token.")
        assert page.locator(".swagger-ui .opblock").count() == 0
        return
    _operations(page)
    # The token given on the page is already in Swagger's Authorize dialog.
    expect(page.locator(".swagger-ui .btn.authorize.locked").first).to_be_visible()
    assert _try_get_model(page) == "200"
    page.locator(MODEL_OP).scroll_into_view_if_needed()
    screenshot(page, "docs-token.png", full_page=False)

"""The demo page (``GET /``) in a real browser: draw or fill, predict, read the label."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_support import TOKEN, screenshot
from playwright.sync_api import expect

from bnfold import digest

OpenPage = Callable[..., Any]


def _card(models: dict[str, Path], name: str) -> Any:
    return digest.check(models[name].read_bytes())


def _ready(page: Any) -> None:
    page.wait_for_selector("#main:not([hidden])")


def _bars(page: Any) -> dict[str, float]:
    rows = page.locator("#chart .bar-row")
    return {
        rows.nth(i).get_attribute("data-label"): float(
            rows.nth(i).get_attribute("data-probability")
        )
        for i in range(rows.count())
    }


def _draw_zero(page: Any) -> None:
    """An oval drawn with the mouse, as a person draws a 0."""
    box = page.locator("#canvas").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    rx, ry = box["width"] * 0.22, box["height"] * 0.36
    points = [
        (cx + rx * math.sin(2 * math.pi * i / 48), cy - ry * math.cos(2 * math.pi * i / 48))
        for i in range(50)
    ]
    page.mouse.move(*points[0])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x, y, steps=2)
    page.mouse.up()


def test_draw_a_digit_and_read_the_prediction(
    service: Callable[..., str], open_page: OpenPage, models: dict[str, Path]
) -> None:
    origin = service("digits")
    page, guard = open_page(origin)
    _ready(page)
    assert page.locator("#image-input").is_visible()
    assert page.locator("#tabular-input").is_hidden()
    assert page.locator("#file-picker").is_hidden()  # the digits model takes tensors only
    assert "0..16" in page.locator("#range-note").inner_text()
    assert "digits-cnn" in page.locator("#model-name").inner_text()

    with page.expect_request(lambda r: r.url.endswith("/predict")) as sent:
        _draw_zero(page)
    body = json.loads(sent.value.post_data)
    expect(page.locator("#label")).not_to_have_text("–")
    label = page.locator("#label").inner_text()
    # The committed model has a drift monitor: the panel shows its window with the drawing
    # in it (read before this test's own request below adds one more sample).
    assert ("/monitor", 200) in guard.api
    report = httpx.get(f"{origin}/monitor").json()
    assert report["enabled"] and report["samples_seen"] >= 1
    expect(page.locator("#monitor-facts")).to_contain_text(f"({report['samples_seen']} seen)")

    # What the page sent is the drawing, downsampled to the card's 8 x 8 values 0..16.
    image = body["image"]
    assert len(image) == 8 and all(len(row) == 8 for row in image)
    values = [v for row in image for v in row]
    assert min(values) >= 0 and max(values) <= 16 and max(values) > 8
    assert image[0][0] == image[0][7] == image[7][0] == image[7][7] == 0  # corners: no ink
    assert image[3][3] == image[3][4] == 0  # the hole of the 0
    assert min(image[1][2:6]) + min(image[6][2:6]) > 0  # its top and bottom strokes

    # The page shows what the API answers for that input, and a drawn 0 is a 0.
    answer = httpx.post(f"{origin}/predict", json=body).json()
    assert label == answer["label"] == "0"
    bars = _bars(page)
    assert list(bars) == _card(models, "digits").labels
    for name, p in answer["probabilities"].items():
        assert bars[name] == pytest.approx(p, abs=1e-9)
    assert page.locator("#chart .bar-row.top").get_attribute("data-label") == "0"

    page.locator("#card-details summary").click()
    expect(page.locator("#card-markdown")).not_to_be_empty()
    assert page.locator("#card-markdown").inner_text().startswith("# Model card: digits-cnn")
    screenshot(page, "demo-digits.png")


def test_example_reproduces_the_golden_sample(
    service: Callable[..., str], open_page: OpenPage, models: dict[str, Path]
) -> None:
    card = _card(models, "digits")
    golden = card.golden[0]
    page, _ = open_page(service("digits"))
    _ready(page)
    page.locator("#example").click()
    expect(page.locator("#label")).not_to_have_text("–")
    want = max(range(len(card.labels)), key=golden.probabilities.__getitem__)
    assert page.locator("#label").inner_text() == card.labels[want]
    bars = _bars(page)
    for name, p in zip(card.labels, golden.probabilities, strict=True):
        assert bars[name] == pytest.approx(p, abs=card.golden_tolerance)


def test_tabular_form_prefilled_with_a_golden_sample(
    service: Callable[..., str], open_page: OpenPage, models: dict[str, Path]
) -> None:
    card = _card(models, "tabular")
    origin = service("tabular")
    page, _ = open_page(origin)
    _ready(page)
    assert page.locator("#image-input").is_hidden()
    inputs = page.locator("#fields input")
    names = [f.name for f in card.input.tabular.features]
    assert [inputs.nth(i).get_attribute("name") for i in range(inputs.count())] == names
    shown = [float(inputs.nth(i).input_value()) for i in range(inputs.count())]
    assert shown == pytest.approx(card.golden[0].input, abs=1e-6)

    page.locator("#predict-tabular").click()
    expect(page.locator("#label")).not_to_have_text("–")
    want = max(range(3), key=card.golden[0].probabilities.__getitem__)
    assert page.locator("#label").inner_text() == card.labels[want]

    inputs.nth(2).fill("3.5")
    with page.expect_response(lambda r: r.url.endswith("/predict")) as answered:
        page.locator("#predict-tabular").click()
    sent = json.loads(answered.value.request.post_data)
    assert sent["features"][names[2]] == 3.5
    answer = answered.value.json()
    expect(page.locator("#label")).to_have_text(answer["label"])
    assert _bars(page) == pytest.approx(answer["probabilities"], abs=1e-9)
    # A card without the monitor's reference: the panel says so, with the reason.
    assert card.monitor is None
    expect(page.locator("#monitor-facts")).to_contain_text("off: the model card has no monitor")
    screenshot(page, "demo-tabular.png")


def test_form_for_categorical_features_and_missing_values(
    service: Callable[..., str], open_page: OpenPage, models: dict[str, Path]
) -> None:
    card = _card(models, "mixed")
    page, _ = open_page(service("mixed"))
    _ready(page)
    bill = page.locator('[data-feature="bill length (mm)"]')
    mass = page.locator('[data-feature="body_mass_g"]')
    island = page.locator('select[data-feature="island"]')
    assert bill.get_attribute("required") is None  # it has a fill: may be left empty
    assert "43.9" in (bill.get_attribute("placeholder") or "")
    assert mass.get_attribute("required") is not None
    options = island.locator("option")
    assert [options.nth(i).inner_text() for i in range(options.count())] == [
        "Biscoe",
        "Dream",
        "(missing: Dream)",
    ]
    # Pre-filled from the golden sample: the numbers, and the category whose column is hot.
    row = card.golden[0].input
    assert float(bill.input_value()) == pytest.approx(row[0], abs=1e-6)
    assert float(mass.input_value()) == pytest.approx(row[1], abs=1e-6)
    assert island.input_value() == ["Biscoe", "Dream"][0 if row[2] >= row[3] else 1]

    # Sent by name, as a client would: the category as text, an empty field as null.
    bill.fill("")
    island.select_option(label="(missing: Dream)")
    with page.expect_response(lambda r: r.url.endswith("/predict")) as answered:
        page.locator("#predict-tabular").click()
    sent = json.loads(answered.value.request.post_data)["features"]
    assert sent == {"bill length (mm)": None, "body_mass_g": pytest.approx(row[1]), "island": None}
    assert answered.value.status == 200
    answer = answered.value.json()
    expect(page.locator("#label")).to_have_text(answer["label"])
    island.select_option("Biscoe")
    with page.expect_response(lambda r: r.url.endswith("/predict")) as answered:
        page.locator("#predict-tabular").click()
    assert json.loads(answered.value.request.post_data)["features"]["island"] == "Biscoe"
    assert answered.value.status == 200


def test_file_picker_for_models_that_take_files(
    service: Callable[..., str], open_page: OpenPage, tmp_path: Path
) -> None:
    from PIL import Image

    origin = service("image_files")
    page, _ = open_page(origin)
    _ready(page)
    assert page.locator("#file-picker").is_visible()
    assert "file rule" in page.locator("#range-note").inner_text()
    # A 16 x 16 PNG: the service resizes it to 8 x 8 as the card says, as training did.
    png = tmp_path / "digit.png"
    pixels = bytes((x * 37 + y * 11) % 256 for y in range(16) for x in range(16))
    Image.frombytes("L", (16, 16), pixels).save(png)
    with page.expect_response(lambda r: r.url.endswith("/predict")) as answered:
        page.locator("#file").set_input_files(str(png))
    assert answered.value.request.headers["content-type"] == "image/png"
    assert answered.value.status == 200
    answer = httpx.post(
        f"{origin}/predict", content=png.read_bytes(), headers={"content-type": "image/png"}
    ).json()
    expect(page.locator("#label")).to_have_text(answer["label"])
    assert _bars(page) == pytest.approx(answer["probabilities"], abs=1e-9)


def test_monitor_panel_shows_the_drift_report(
    service: Callable[..., str], open_page: OpenPage, models: dict[str, Path]
) -> None:
    from training.data import load_splits, make_data_spec

    origin = service("digits_monitored", monitor_window="32")
    for image in load_splits(make_data_spec("digits")).test.X[:40]:  # clean traffic
        assert httpx.post(f"{origin}/predict", json={"image": image[0].tolist()}).is_success
    page, _ = open_page(origin)
    _ready(page)
    # Without image files, ink maps to the training range the card keeps for the monitor.
    (channel,) = _card(models, "digits_monitored").monitor.ranges
    note = page.locator("#range-note").inner_text()
    assert f"{channel.min:g}..{channel.max:g}, the training range in the model card" in note
    page.locator("#example").click()
    expect(page.locator("#label")).not_to_have_text("–")
    expect(page.locator("#monitor-facts")).to_contain_text("41 seen")
    report = httpx.get(f"{origin}/monitor").json()
    assert report["enabled"] and report["samples_seen"] == 41 and report["drift"] is not None
    facts = page.locator("#monitor-facts").inner_text()
    assert f"Drift\n{'yes' if report['drift'] else 'no'}" in facts
    assert f"{report['samples_in_window']} of {report['window_size']} samples" in facts
    rows = page.locator("#monitor-components tbody tr")
    assert rows.count() == len(report["components"]) > 1
    assert [rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())] == [
        c["name"] for c in report["components"]
    ]
    screenshot(page, "demo-monitor.png")


def test_monitor_panel_hidden_without_the_route(
    service: Callable[..., str], open_page: OpenPage
) -> None:
    origin = service("digits")
    page, _ = open_page(origin, "/static/ui/favicon.svg")  # a page on the origin, then route
    page.route(f"{origin}/monitor", lambda r: r.fulfill(status=404, body='{"error": "not found"}'))
    page.goto(origin + "/")
    _ready(page)
    expect(page.locator("#label")).to_have_text("–")
    page.locator("#example").click()
    expect(page.locator("#label")).not_to_have_text("–")
    assert page.locator("#monitor").is_hidden()


def test_token_form_then_predictions(service: Callable[..., str], open_page: OpenPage) -> None:
    origin = service("digits", api_token=TOKEN)
    page, guard = open_page(origin)
    page.wait_for_selector("#token-form:not([hidden])")
    assert page.locator("#main").is_hidden()
    page.locator("#token").fill("wrong-token-" + "w" * 10)
    with page.expect_response(lambda r: r.url.endswith("/model")) as refused:
        page.locator("#token-form button").click()
    assert refused.value.status == 401
    assert page.locator("#token-form").is_visible() and page.locator("#main").is_hidden()
    page.locator("#token").fill(TOKEN)
    page.locator("#token-form button").click()
    _ready(page)
    page.locator("#example").click()
    expect(page.locator("#label")).not_to_have_text("–")
    assert ("/predict", 200) in guard.api
    assert ("/model", 401) in guard.api
    assert page.locator("#token-form").is_hidden()


def test_an_older_monitor_report_never_replaces_a_newer_one(
    service: Callable[..., str], open_page: OpenPage
) -> None:
    # The page refreshes the panel at load and after every prediction; here the load's
    # report arrives last, after the newer one, as it may when the first scoring is slow.
    origin = service("digits")
    page, _ = open_page(origin, "/static/ui/favicon.svg")
    held: list[tuple[Any, bytes]] = []
    newer: list[dict[str, Any]] = []

    def reorder(route: Any) -> None:
        body = httpx.get(route.request.url).content  # what the service answers now
        if not held:  # the page load's refresh: answered below, after the next one
            held.append((route, body))
            return
        newer.append(json.loads(body))
        route.fulfill(status=200, content_type="application/json", body=body)
        first, older = held[0]
        first.fulfill(status=200, content_type="application/json", body=older)

    page.route(f"{origin}/monitor", reorder)
    page.goto(origin + "/")
    _ready(page)
    page.locator("#example").click()
    expect(page.locator("#label")).not_to_have_text("–")
    expect(page.locator("#monitor-facts")).to_contain_text(f"({newer[0]['samples_seen']} seen)")
    page.wait_for_timeout(500)  # time for the older report to be rendered, if it were
    shown = page.locator("#monitor-facts").inner_text()
    assert f"({newer[0]['samples_seen']} seen)" in shown, shown

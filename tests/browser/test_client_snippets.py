"""The client snippets of the README and docs/service.md run against the service: Python
(httpx, tritonclient) in this process, JavaScript (fetch) in the browser."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from browser_support import REPO

SOURCES = {REPO / "README.md": "### Clients", REPO / "docs" / "service.md": "## Clients"}
DEFAULT = "127.0.0.1:8000"


def snippets(path: Path, heading: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block in the section under ``heading``."""
    level = len(heading.split()[0])
    blocks: list[tuple[str, str]] = []
    inside, fence = False, None
    lines: list[str] = []
    for line in path.read_text().splitlines():
        if fence is None and line.startswith("#"):
            depth = len(line) - len(line.lstrip("#"))
            if line == heading:
                inside = True
                continue
            if inside and depth <= level:
                break
        if not inside:
            continue
        if fence is None and line.startswith("```") and len(line) > 3:
            fence, lines = line[3:], []
        elif fence is not None and line == "```":
            blocks.append((fence, "\n".join(lines) + "\n"))
            fence = None
        elif fence is not None:
            lines.append(line)
    return blocks


def _blocks() -> list[tuple[str, str]]:
    found = [snippets(path, heading) for path, heading in SOURCES.items()]
    assert found[0] == found[1], "README.md and docs/service.md show different client code"
    assert [lang for lang, _ in found[0]] == ["python", "js", "python"]
    return found[0]


def _answer(origin: str) -> dict[str, Any]:
    digit_body = _blocks()[0][1].split("digit = ", 1)[1].split("  #", 1)[0]
    digit = eval(digit_body, {})  # the literal list in the snippet itself
    return dict(httpx.post(f"{origin}/predict", json={"image": digit}).json())


def test_python_snippets(service: Callable[..., str]) -> None:
    origin = service("digits")
    code = "\n".join(block for lang, block in _blocks() if lang == "python")
    code = code.replace(DEFAULT, origin.removeprefix("http://"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "client snippets", "exec"), {})
    answer = _answer(origin)
    label, p = out.getvalue().splitlines()[0].split()
    assert label == answer["label"] == "0"
    assert float(p) == answer["probabilities"]["0"]
    assert out.getvalue().splitlines()[1] == f"[{answer['class_index']}]"


def test_javascript_snippet(service: Callable[..., str], open_page: Callable[..., Any]) -> None:
    origin = service("digits")
    (js,) = [block for lang, block in _blocks() if lang == "js"]
    page, _ = open_page(origin, "/static/ui/demo.css")  # any page of the same origin
    printed: list[str] = []
    page.on("console", lambda message: printed.append(message.text))
    page.evaluate("async () => {\n" + js.replace(f"http://{DEFAULT}", origin) + "\n}")
    answer = _answer(origin)
    assert printed == [f"{answer['label']} {answer['probabilities'][answer['label']]}"]

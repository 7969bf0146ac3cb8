"""What the browser tests share (imported by name: ``from browser_support import ...``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("BNFOLD_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("BNFOLD_ARTIFACTS", REPO / "artifacts" / "ci"))
TOKEN = "browser-" + "z" * 24
# The flags Chromium needs here (root, no GPU) and the ones that stop it calling home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
]


def screenshot(page: Any, name: str, full_page: bool = True) -> Path:
    """Save a PNG of the page (or of what the window shows) under the artifacts folder."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=full_page)
    return path

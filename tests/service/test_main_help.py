"""``python -m service --help`` (service/__main__.py) lists every setting from its field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_every_setting_with_its_default_and_description() -> None:
    environ = {k: v for k, v in os.environ.items() if k != "MODEL_PATH"}
    done = subprocess.run(
        [sys.executable, "-m", "service", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    settings = done.stdout.split("settings (environment variables):\n", 1)[1]
    entries: dict[str, str] = {}
    for line in settings.splitlines():
        if not line.startswith(" " * 24):
            name, _, text = line.strip().partition(" ")
            entries[name] = text.strip()
        else:
            entries[name] += " " + line.strip()
    assert list(entries) == [name.upper() for name in Settings.model_fields]
    for name, field in Settings.model_fields.items():
        text = entries[name.upper()]
        if field.is_required():
            assert "(required" in text, name
        else:
            default = field.default
            shown = str(default).lower() if isinstance(default, bool) else default
            shown = {None: "unset", "": "empty"}.get(shown, shown)
            assert f"default: {shown}" in text, (name, text)
        if field.description:
            words = " ".join(field.description.split(":", 1)[-1].split()[:6])
            assert words in text, (name, text)
    assert "default: 64; 1..4096" in entries["MAX_BATCH_SIZE"]
    assert "one of critical, error, warning, info, debug" in entries["LOG_LEVEL"]

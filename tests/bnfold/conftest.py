"""The service tests' tiny model builder (tests/service/svc_models.py) is shared here."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

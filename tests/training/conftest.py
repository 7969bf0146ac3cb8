"""Make the shared test helpers of tests/training importable from its sub-folders."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

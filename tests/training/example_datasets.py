"""The README's example datasets (scripts/example_data.py), for tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def example_data() -> ModuleType:
    """scripts/example_data.py as a module."""
    spec = importlib.util.spec_from_file_location("example_data", REPO / "scripts/example_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def penguins_csv(folder: Path) -> Path:
    """The Palmer penguins CSV (from the palmerpenguins package) copied into ``folder``."""
    return example_data().penguins_csv(folder / "penguins.csv")  # type: ignore[no-any-return]


def digits_folder(folder: Path, scale: int = 2, limit: int | None = None) -> Path:
    """scikit-learn's digits as PNG files in class folders under ``folder``."""
    return example_data().digits_folder(folder, scale, limit)  # type: ignore[no-any-return]

"""Options declared once (training/options.py): validation from the field, kinds."""

from __future__ import annotations

from pathlib import Path

import pytest
from option_demo import Demo

from training.errors import UsageError
from training.options import applicable, check_fields


def test_values_from_python_are_checked_the_same_way() -> None:
    with pytest.raises(UsageError, match=r"^--colour must be one of red, green, got 'blue'$"):
        check_fields(Demo(Path("x"), sizes=(1,), colour="blue"))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"^hidden must be >= 0, got -1$"):
        check_fields(Demo(Path("x"), sizes=(1,), hidden=-1))
    with pytest.raises(UsageError, match=r"^--channels must be one of 1, 3, got 2$"):
        check_fields(Demo(Path("x"), sizes=(1,), channels=2))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="needs at least one value"):
        check_fields(Demo(Path("x"), sizes=()))
    check_fields(Demo(Path("x"), sizes=(1,)))


def test_options_that_do_not_apply_to_the_kind_are_left_out() -> None:
    demo = Demo(Path("x"), sizes=(1,))
    assert "shift" in applicable(demo, "cnn")
    assert "shift" not in applicable(demo, "mlp") and "count" in applicable(demo, "mlp")

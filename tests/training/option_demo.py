"""A declared options class with every kind of option (tests of training/options*.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from training.options import option, options_class, plain


@options_class
class Demo:
    """Every kind of option the declarations use."""

    source: Path = option(help="what to read", positional=True)
    sizes: tuple[int, ...] = option(
        group="numbers", help="comma-separated sizes", ge=1, per_kind={"cnn": (8, 8), "mlp": (4,)}
    )
    count: int = option(3, "numbers", "how many to take", ge=1, why="(need one)")
    rate: float = option(0.5, "numbers", "a share", gt=0, le=1)
    names: tuple[str, ...] | None = option(None, "words", "comma-separated names")
    colour: Literal["red", "green"] = option("red", "words", "a colour")
    kind: Literal["cnn", "mlp"] = option("mlp", "words", "the kind", auto="auto")
    shift: int = option(1, "words", "image only option", applies_to=("cnn",))
    verbose: bool = option(False, "words", "say more")
    channels: Literal[1, 3] | None = option(None, "words", "image channels (default: the files')")
    hidden: int = option(7, help="not on the command line", cli=False, ge=0)

    def to_dict(self) -> dict[str, object]:
        return plain(self.__dict__)  # type: ignore[no-any-return]

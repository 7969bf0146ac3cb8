"""Command-line options declared once, as typed dataclass fields.

A configuration class (see ``training.config``) declares each option as ONE field::

    epochs: int = option(60, "optimization", "training epochs", ge=1)

From that field come the argparse option (``--epochs``, ``type=int``, default 60,
its help with the default appended, its ``--help`` group), its validation
(``--epochs must be >= 1, got 0``) and its place in ``summary.json``.
``check_fields`` (called by each class's ``validate``) checks bounds and
choices. ``training.option_parser`` turns the fields into argparse options
(``add_options``), parsed arguments back into an instance (``from_args``), and
runs the checks right after parsing (``check_args``), so a bad value stops the
command with one line and exit status 2 before anything heavy (torch, data) is
imported.

Types come from the annotation: ``int``, ``float`` (must be finite), ``str``,
``Path``, ``bool`` (a flag), ``Literal[...]`` (choices), ``tuple[int, ...]`` /
``tuple[str, ...]`` (comma-separated, e.g. ``--widths 32,64``), each optionally
``| None`` (default ``None``: not given). A default that depends on the model
kind is ``per_kind={"cnn": ..., "mlp": ...}`` (the CLI default is then ``None``,
resolved by ``from_args(..., model_kind=...)``); an option that only acts on one
kind says ``applies_to=("cnn",)`` and is left out of that other kind's summary.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from training.errors import UsageError

OPTION = "bnfold_option"  # the key of a field's metadata that holds its ``Option``
KIND_NAMES = {"cnn": "CNN", "mlp": "MLP"}
T = TypeVar("T")


@dataclass(frozen=True)
class Option:
    """How one config field appears on the command line and which values it accepts."""

    group: str | None
    help: str
    flag: str | None = None  # default: --field-name
    positional: bool = False
    metavar: str | None = None
    choices: tuple[Any, ...] | None = None  # default: the Literal's values
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    why: str = ""  # said after a bound is broken, e.g. "(BatchNorm needs 2+ samples per batch)"
    per_kind: Mapping[str, Any] | None = None
    applies_to: tuple[str, ...] | None = None  # model kinds the option acts on (None: all)
    auto: str | None = None  # a CLI-only choice meaning "decide from the data" (the default)
    cli: bool = True  # False: validated and stored, but not a command-line option


def option(
    default: Any = dataclasses.MISSING, group: str | None = None, help: str = "", **kw: Any
) -> Any:
    """A dataclass field that is also a command-line option (see ``Option`` for ``kw``)."""
    if not help:
        raise ValueError("every option needs a help text")
    metadata = {OPTION: Option(group=group, help=help, **kw)}
    if isinstance(default, list | dict):
        raise TypeError("use a tuple default: config values are immutable")
    return dataclasses.field(default=default, metadata=metadata)


@typing.dataclass_transform(frozen_default=True, field_specifiers=(option, dataclasses.field))
def options_class(cls: type[T]) -> type[T]:
    """A frozen dataclass whose ``option(...)`` fields type checkers understand."""
    return dataclasses.dataclass(frozen=True)(cls)


def flag_of(field: dataclasses.Field[Any]) -> str:
    """How messages name the field: its ``--flag``, positional name or plain name."""
    opt = field.metadata.get(OPTION)
    if opt is None or not opt.cli:
        return field.name.replace("_", " ")
    if opt.positional:
        return field.name
    return opt.flag or "--" + field.name.replace("_", "-")


def option_fields(cls: type) -> list[tuple[dataclasses.Field[Any], Option]]:
    """The fields of ``cls`` that carry an ``Option``, in declaration order."""
    return [(f, f.metadata[OPTION]) for f in dataclasses.fields(cls) if OPTION in f.metadata]


def unwrap(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (itself, False)."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def check_fields(instance: Any) -> None:
    """Raise ``UsageError`` naming the first field whose value is out of bounds or choices."""
    check_values(
        type(instance), {f.name: getattr(instance, f.name) for f in dataclasses.fields(instance)}
    )


def check_values(cls: type, values: Mapping[str, Any]) -> None:
    """Check the values given for ``cls``'s options (``None`` or absent: not given yet)."""
    hints = typing.get_type_hints(cls)
    for field, opt in option_fields(cls):
        value = values.get(field.name)
        if value is None or (opt.auto is not None and value == opt.auto):
            continue
        base, _ = unwrap(hints[field.name])
        choices = opt.choices or (
            typing.get_args(base) if typing.get_origin(base) is Literal else None
        )
        items = value if isinstance(value, tuple) else (value,)
        if isinstance(value, tuple) and not value:
            raise UsageError(f"{flag_of(field)} needs at least one value")
        for item in items:
            _check_one(flag_of(field), opt, choices, item, value)


def _check_one(
    name: str, opt: Option, choices: tuple[Any, ...] | None, item: Any, value: Any
) -> None:
    if choices is not None:
        if item not in choices:
            allowed = ", ".join(str(c) for c in choices)
            raise UsageError(f"{name} must be one of {allowed}, got {show(value)}")
        return
    if isinstance(item, bool) or not isinstance(item, int | float):
        return
    if isinstance(item, float) and not math.isfinite(item):
        raise UsageError(f"{name} must be a finite number, got {show(value)}")
    ok = (
        (opt.ge is None or item >= opt.ge)
        and (opt.gt is None or item > opt.gt)
        and (opt.le is None or item <= opt.le)
        and (opt.lt is None or item < opt.lt)
    )
    if not ok:
        every = "every value of " if isinstance(value, tuple) else ""
        why = f" {opt.why}" if opt.why else ""
        raise UsageError(f"{every}{name} must be {_bounds(opt)}{why}, got {show(value)}")


def _bounds(opt: Option) -> str:
    low = (
        f"[{show(opt.ge)}"
        if opt.ge is not None
        else f"({show(opt.gt)}"
        if opt.gt is not None
        else None
    )
    high = (
        f"{show(opt.le)}]"
        if opt.le is not None
        else f"{show(opt.lt)})"
        if opt.lt is not None
        else None
    )
    if low and high:
        return f"in {low}, {high}"
    if opt.ge is not None:
        return f">= {show(opt.ge)}"
    if opt.gt is not None:
        return f"> {show(opt.gt)}"
    return f"<= {show(opt.le)}" if opt.le is not None else f"< {show(opt.lt)}"


def show(value: Any, bare: bool = False) -> str:
    """A value as the user types it (strings quoted in messages unless ``bare``)."""
    if isinstance(value, tuple | list):
        return ",".join(show(v, bare) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and not bare:
        return repr(value)
    return str(value)


def applicable(instance: Any, kind: str) -> dict[str, Any]:
    """``instance.to_dict()`` without the options that do not act on a model of ``kind``."""
    skip = {
        f.name
        for f, opt in option_fields(type(instance))
        if opt.applies_to and kind not in opt.applies_to
    }
    return {k: v for k, v in instance.to_dict().items() if k not in skip}


def plain(value: Any) -> Any:
    """JSON-friendly copy: tuples become lists, paths strings, keys strings."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value

"""The command line of the options that ``training.options`` declares.

``add_options(parser, cls)`` adds every command-line option of an options class
to an argparse parser; ``from_args(cls, args)`` builds the instance from the
parsed arguments; ``check_args(args)`` validates them right after parsing.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from training.options import (
    KIND_NAMES,
    OPTION,
    Option,
    check_values,
    flag_of,
    option_fields,
    show,
    unwrap,
)

CLASSES = "option_classes"  # namespace attribute: the option classes a parser was built from


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add every command-line option of ``cls`` to ``parser``, each in its help group."""
    hints = typing.get_type_hints(cls)
    taken = {action.dest for action in parser._actions}
    for field, opt in option_fields(cls):
        if not opt.cli:
            continue
        if field.name in taken:
            raise ValueError(f"option {field.name!r} of {cls.__name__} is already on the parser")
        base, optional = unwrap(hints[field.name])
        target: Any = _group(parser, opt.group)
        kwargs = _argparse_kwargs(field, opt, base, optional)
        names = [field.name] if opt.positional else [flag_of(field)]
        target.add_argument(*names, **kwargs)
    known = parser.get_default(CLASSES) or ()
    parser.set_defaults(**{CLASSES: (*known, cls)})


def _group(parser: argparse.ArgumentParser, title: str | None) -> Any:
    if title is None:
        return parser
    for group in parser._action_groups:
        if group.title == title:
            return group
    return parser.add_argument_group(title)


def _argparse_kwargs(
    field: dataclasses.Field[Any], opt: Option, base: Any, optional: bool
) -> dict[str, Any]:
    has_default = field.default is not dataclasses.MISSING
    default = field.default if has_default else None
    kwargs: dict[str, Any] = {}
    if not opt.positional:
        kwargs["dest"] = field.name
    if base is bool:
        kwargs["action"] = argparse.BooleanOptionalAction if default else "store_true"
        kwargs["help"] = _escape(opt.help)
        return kwargs
    choices = opt.choices or (typing.get_args(base) if typing.get_origin(base) is Literal else None)
    kwargs["type"] = _parser_of(type(choices[0]) if choices else base)
    if choices:
        kwargs["choices"] = (opt.auto, *choices) if opt.auto else choices
    if opt.metavar:
        kwargs["metavar"] = opt.metavar
    if opt.auto:
        default, has_default = opt.auto, True
    elif opt.per_kind:
        default = None  # resolved from the model kind once the data is known
    elif not has_default and not optional and not opt.positional:
        kwargs["required"] = True
    if not opt.positional:
        kwargs["default"] = default
    kwargs["help"] = _escape(opt.help + _default_text(opt, default, has_default))
    return kwargs


def _default_text(opt: Option, default: Any, has_default: bool) -> str:
    if opt.per_kind:
        parts = [f"{show(v, True)} for {KIND_NAMES.get(k, k)}" for k, v in opt.per_kind.items()]
        return f" (default: {', '.join(parts)})"
    if not has_default or default is None:
        return ""
    return f" (default: {show(default, True)})"


def _escape(text: str) -> str:
    return text.replace("%", "%%")  # argparse %-formats help texts


def _parser_of(base: Any) -> Callable[[str], Any]:
    if typing.get_origin(base) is tuple:
        item = typing.get_args(base)[0]
        return _comma_list(item)
    if base in (int, float, str, Path):
        return base
    raise TypeError(f"no command-line parser for options of type {base!r}")


def _comma_list(item: type) -> Callable[[str], tuple[Any, ...]]:
    def parse(text: str) -> tuple[Any, ...]:
        parts = [part.strip() for part in text.split(",")]
        try:
            values = tuple(item(part) for part in parts if part)
        except ValueError:
            example = "32,64" if item is int else "a,b"
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {item.__name__} values like {example}, got {text!r}"
            ) from None
        if not values:
            raise argparse.ArgumentTypeError("expected at least one value")
        return values

    parse.__name__ = f"comma-separated {item.__name__}"  # argparse names it in its errors
    return parse


def from_args(
    cls: type, args: argparse.Namespace, model_kind: str | None = None, **fixed: Any
) -> Any:
    """An instance of ``cls`` from parsed ``args``; ``fixed`` values win.

    Options left at ``None`` that have a per-kind default get ``model_kind``'s.
    """
    values: dict[str, Any] = {}
    for field, opt in option_fields(cls):
        if field.name in fixed or not opt.cli:
            continue
        value = getattr(args, field.name)
        if value is None and opt.per_kind:
            if model_kind is None:
                raise ValueError(f"{field.name} has a per-kind default: pass model_kind")
            value = opt.per_kind[model_kind]
        values[field.name] = value
    return cls(**values, **fixed)


def check_args(args: argparse.Namespace) -> None:
    """Validate parsed arguments before the command runs (``UsageError`` on the first bad one).

    Classes that need nothing but their options (no data-dependent or per-kind
    value) are built and fully validated, cross-field checks included; the
    others get their per-field checks, and the rest once the data is known.
    """
    for cls in getattr(args, CLASSES, ()):
        check_values(cls, vars(args))
        if _standalone(cls):
            instance = from_args(cls, args)
            validate = getattr(instance, "validate", None)
            if validate is not None:
                validate()


def _standalone(cls: type) -> bool:
    """Whether parsed arguments alone build ``cls`` (no data-dependent or per-kind field)."""
    for field in dataclasses.fields(cls):
        opt = field.metadata.get(OPTION)
        if opt is None or not opt.cli:
            if field.default is dataclasses.MISSING:
                return False
        elif opt.per_kind or opt.auto:
            return False
    return True

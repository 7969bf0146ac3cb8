"""A user's ``nn.Module`` from ``FILE.py:FACTORY`` and a ``state_dict`` file.

``FACTORY`` is any callable in ``FILE.py`` (a function or the module class itself)
that returns the module when called without arguments; ``FILE.py`` may import
modules that sit beside it. A dotted module path (``package.module:FACTORY``) is
accepted too. The weights are a ``state_dict`` (``torch.save(model.state_dict(),
path)``) read with ``torch.load(weights_only=True)``, so no pickled code runs.
Every problem is a one-line ``UsageError`` naming it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from training.datasets import file_sha256
from training.errors import UsageError, first_line


def split_spec(spec: str) -> tuple[str, str]:
    """``"path/net.py:build"`` -> ``("path/net.py", "build")``; ``UsageError`` if malformed."""
    source, sep, factory = spec.rpartition(":")
    if not sep or not source or not factory.isidentifier():
        raise UsageError(
            f"module {spec!r} must be FILE.py:FACTORY (e.g. models/net.py:build), "
            "FACTORY a function or class in FILE.py"
        )
    return source, factory


def load_factory(spec: str) -> Callable[[], Any]:
    """The callable ``FACTORY`` of ``FILE.py:FACTORY`` (or ``package.module:FACTORY``)."""
    source, name = split_spec(spec)
    module = _import(source)
    if not hasattr(module, name):
        public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        shown = ", ".join(public[:10]) or "none"
        raise UsageError(f"{source} has no {name!r} (callables defined there: {shown})")
    factory = getattr(module, name)
    if not callable(factory):
        raise UsageError(f"{source}:{name} is a {type(factory).__name__}, not a callable")
    return factory


def build_module(spec: str) -> nn.Module:
    """Call the factory of ``spec``; the module it returns, in eval mode."""
    factory = load_factory(spec)
    try:
        model = factory()
    except Exception as exc:
        raise UsageError(f"{spec}() raised {type(exc).__name__}: {first_line(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise UsageError(f"{spec}() returned a {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A ``state_dict`` file read with ``weights_only=True``; ``UsageError`` if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UsageError(f"{path}: not a readable weights file ({first_line(exc)})") from exc
    if not isinstance(state, dict) or not state:
        raise UsageError(
            f"{path}: holds a {type(state).__name__}, not a state_dict "
            "(save it with torch.save(model.state_dict(), path))"
        )
    for key, value in state.items():
        if isinstance(value, dict):
            raise UsageError(
                f"{path}: entry {str(key)!r} is a dict, not a tensor: a training checkpoint? "
                f"save the state_dict alone (torch.save(checkpoint[{str(key)!r}], path))"
            )
        if not isinstance(value, torch.Tensor):
            raise UsageError(
                f"{path}: entry {str(key)!r} is a {type(value).__name__}, not a tensor: "
                "not a state_dict (save it with torch.save(model.state_dict(), path))"
            )
    return {str(k): v for k, v in state.items()}


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> str:
    """Load the ``state_dict`` at ``path`` into ``model`` (strict); return the file's SHA-256.

    The error names the first missing key, unexpected key or shape mismatch.
    """
    state = load_state_dict(path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    problems = []
    if missing:
        problems.append(f"missing key {missing[0]!r}{_more(missing)}")
    if unexpected:
        problems.append(f"unexpected key {unexpected[0]!r}{_more(unexpected)}")
    for key, want in expected.items():
        got = state.get(key)
        if got is not None and got.shape != want.shape:
            problems.append(
                f"{key!r} has shape {list(got.shape)} in the file, the module needs "
                f"{list(want.shape)}"
            )
            break
    if problems:
        raise UsageError(f"{path} does not fit {type(model).__name__}: {'; '.join(problems)}")
    try:
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # e.g. a dtype the parameter cannot take
        raise UsageError(f"{path} does not fit {type(model).__name__}: {first_line(exc)}") from exc
    return file_sha256(Path(path))


def _more(keys: list[str]) -> str:
    return f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""


def _import(source: str) -> ModuleType:
    if source.endswith(".py") or os.sep in source or "/" in source:
        return _import_file(Path(source))
    try:
        return importlib.import_module(source)
    except Exception as exc:
        raise UsageError(
            f"cannot import {source}: {type(exc).__name__}: {first_line(exc)}"
        ) from exc


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise UsageError(f"module file not found: {path}")
    if path.suffix != ".py":
        raise UsageError(f"{path}: a module file must be a .py file")
    # A unique name, registered while it runs (dataclasses and pickling look modules up).
    name = "bnfold_user_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has one
        raise UsageError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with _beside(path):
            spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise UsageError(f"{path}: line {exc.lineno}: {exc.msg}") from exc
    except (Exception, SystemExit) as exc:  # a script that exits at import is an error too
        sys.modules.pop(name, None)
        raise UsageError(
            f"{path} failed to import: {type(exc).__name__}: {first_line(exc)}"
        ) from exc
    return module


@contextlib.contextmanager
def _beside(path: Path) -> Iterator[None]:
    """Let the file import the modules that sit beside it."""
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)

"""torch.fx tracing of a user's module, with an error that names the line that stops it.

torch.fx runs ``forward`` on symbolic values, so Python that needs a concrete value
(``if x.sum() > 0``, ``for i in range(x.shape[0])``, ``len(x)``, ``x.numpy()``)
cannot be traced. The message names that statement, its file and line, and what
torch.fx said, on one line.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import torch
from torch import fx, nn

from training.folding.errors import FoldingError

_TORCH_DIR = Path(torch.__file__).resolve().parent
_OWN_DIR = Path(__file__).resolve().parent


def trace_module(model: nn.Module) -> fx.GraphModule:
    """``torch.fx.symbolic_trace(model)``; ``FoldingError`` (a ``UsageError``) naming the
    failing statement of ``model``'s code if it cannot be traced."""
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, RuntimeError...)
        raise FoldingError(untraceable_message(model, exc)) from exc


def untraceable_message(model: nn.Module, exc: BaseException) -> str:
    """``cannot trace Net with torch.fx: `if x.sum() > 0:` (net.py:12, in forward) ...``."""
    said = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    frame = _failing_frame(exc)
    where = ""
    if frame is not None:
        statement = (frame.line or "").strip()
        shown = f"`{statement}` " if statement else ""
        where = f" {shown}({Path(frame.filename).name}:{frame.lineno}, in {frame.name})"
    return (
        f"cannot trace {type(model).__name__} with torch.fx:{where} {type(exc).__name__}: "
        f"{said}; forward() must not branch or loop on tensor values or sizes "
        "(use tensor operations such as torch.where)"
    )


def _failing_frame(exc: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame outside torch and this package: the user's statement."""
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        path = Path(frame.filename).resolve()
        if not (path.is_relative_to(_TORCH_DIR) or path.is_relative_to(_OWN_DIR)):
            return frame
    return None

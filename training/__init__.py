"""Train BatchNorm networks, fold their frozen statistics, export them to ONNX.

The public Python API::

    from training import export_model   # your own nn.Module -> folded, carded, verified ONNX

``import training`` stays light: torch is imported when ``export_model`` is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.own_model import export_model

__all__ = ["export_model"]


def __getattr__(name: str) -> Any:
    if name == "export_model":
        from training.own_model import export_model

        return export_model
    raise AttributeError(f"module 'training' has no attribute {name!r}")

"""FastAPI + ONNX Runtime service for BN-folded models (imports no torch)."""

from bnfold import __version__

__all__ = ["__version__"]

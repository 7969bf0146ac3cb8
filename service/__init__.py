"""FastAPI + ONNX Runtime service for BN-folded models (imports no torch)."""

__version__ = "0.1.0"

"""FastAPI + ONNX Runtime service for BN-folded models (imports no torch)."""

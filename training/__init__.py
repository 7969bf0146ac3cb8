"""Train BatchNorm networks, fold their frozen statistics, export them to ONNX."""

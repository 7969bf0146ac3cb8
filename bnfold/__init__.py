"""bnfold: BatchNorm networks from training to a single-sample prediction service.

This package holds what ``training`` and ``service`` share: the model card
contract (``bnfold.card``), the model digest (``bnfold.digest``), the ONNX
wire-format reader (``bnfold.onnxwire``) and the ``bnfold`` command line. It
imports neither torch nor onnx.
"""

__version__ = "0.2.0"

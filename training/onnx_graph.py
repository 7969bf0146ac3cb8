"""Turn a PyTorch module into an ONNX graph, and inspect that graph."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator, Sequence

import onnx
import onnxruntime as ort
import torch
from torch import nn

from bnfold import digest
from bnfold.card import CARD_KEY, INPUT_NAME, OUTPUTS, ModelCard


class WithProbabilities(nn.Module):
    """Return ``(logits, softmax(logits))`` so the service does no numerics itself."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(x)
        return logits, torch.softmax(logits, dim=-1)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    # The exporter narrates every step on stdout and warns about optional packages
    # (torchvision); none of it is actionable for our users.
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def to_onnx(
    module: nn.Module,
    example: torch.Tensor,
    *,
    opset: int = 18,
    output_names: Sequence[str] = OUTPUTS,
) -> onnx.ModelProto:
    """Export ``module`` (eval mode) with one input ``input`` and a dynamic batch axis.

    ``module`` must return ``(logits, probabilities)`` (see ``WithProbabilities``),
    followed by any internal outputs ``output_names`` lists after those two.
    Uses the ``torch.export``-based exporter with its graph optimizer, which folds
    constants so the graph computes nothing that is fixed at run time.
    """
    module.eval()
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            module,
            (example,),
            input_names=[INPUT_NAME],
            output_names=list(output_names),
            dynamic_shapes=({0: batch},),
            opset_version=opset,
            dynamo=True,
            optimize=True,
            verbose=False,
        )
    if program is None:  # pragma: no cover - only when an output file is given
        raise RuntimeError("torch.onnx.export returned no program")
    model = program.model_proto
    # Name the batch axis the same way on every input and output.
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
    return model


def runtime_constant_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes whose output does not depend on any graph input (computed anew on every call).

    Such nodes (a zero bias built from Shape/Expand, a Constant feeding a Reshape
    that could be an initializer...) keep ONNX Runtime from fusing and slow
    every call; a clean export has none.
    """
    graph = model.graph
    dynamic: set[str] = {value.name for value in graph.input}
    found: list[str] = []
    for node in graph.node:  # ONNX graphs are topologically sorted
        if any(name in dynamic for name in node.input if name):
            dynamic.update(node.output)
        else:
            found.append(f"{node.op_type}:{node.name or node.output[0]}")
    return found


def check_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """Run the full ONNX checker and strict shape inference; return the inferred model."""
    onnx.checker.check_model(model, full_check=True)
    return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)


def ort_session(model: onnx.ModelProto | str) -> ort.InferenceSession:
    """A single-threaded ONNX Runtime session (deterministic, like one service worker)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def seal_model(model: onnx.ModelProto, card: ModelCard) -> tuple[bytes, ModelCard]:
    """The file's bytes with ``card`` sealed into its metadata, and the sealed card.

    Checked again on the final bytes exactly as the service will check them.
    """
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    kept = [p for p in bare.metadata_props if p.key != CARD_KEY]
    del bare.metadata_props[:]
    bare.metadata_props.extend(kept)
    data, card = digest.seal(bare.SerializeToString(), card)
    if digest.check(data) != card:  # pragma: no cover - a serializer regression
        raise RuntimeError("the sealed model does not check against its own card")
    return data, card

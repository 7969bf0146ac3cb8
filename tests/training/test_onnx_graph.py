"""Export wrapper and graph inspection."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from training.onnx_graph import (
    WithProbabilities,
    check_graph,
    ort_session,
    runtime_constant_nodes,
    to_onnx,
)


def test_to_onnx_has_dynamic_batch_and_both_outputs() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    model = check_graph(to_onnx(WithProbabilities(net), torch.randn(2, 4)))
    assert [o.name for o in model.graph.output] == ["logits", "probabilities"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert runtime_constant_nodes(model) == []
    session = ort_session(model)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    logits, probs = session.run(None, {"input": x})
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)


def test_runtime_constant_nodes_finds_a_bias_built_at_run_time() -> None:
    # A zero bias built from Shape -> ConstantOfShape does not depend on the input.
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 3], np.ones(6, np.float32))
    nodes = [
        helper.make_node("Shape", ["w"], ["w_shape"], name="shape"),
        helper.make_node("ConstantOfShape", ["w_shape"], ["zeros"], name="zeros"),
        helper.make_node("MatMul", ["x", "zeros"], ["y"], name="matmul"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [w],
    )
    model = helper.make_model(graph)
    assert runtime_constant_nodes(model) == ["Shape:shape", "ConstantOfShape:zeros"]
    onnx.checker.check_model(model)

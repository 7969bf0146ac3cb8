"""The proofs themselves: they must pass on a right model and fail on a wrong one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from training.onnx_graph import ort_session
from training.verify import check_batch_independence, check_parity

W = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
X = np.random.default_rng(1).normal(size=(40, 4)).astype(np.float32) * 3 + 1


def _model(batch_statistics: bool):  # type: ignore[no-untyped-def]
    """x @ W -> softmax; optionally normalising x with the BATCH mean first (BN in train mode)."""
    nodes = []
    source = "input"
    if batch_statistics:
        nodes += [
            helper.make_node("ReduceMean", ["input", "axes"], ["mu"], keepdims=1),
            helper.make_node("Sub", ["input", "mu"], ["centred"]),
        ]
        source = "centred"
    nodes += [
        helper.make_node("MatMul", [source, "W"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3]),
        ],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(np.array([0]), "axes")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _oracle() -> nn.Module:
    linear = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(W.T))
    return linear.eval()


def test_batch_independence_passes_with_stored_statistics() -> None:
    result = check_batch_independence(ort_session(_model(False)), X, sizes=range(2, 9))
    assert result.passed
    assert result.max_abs_prob_diff <= 1e-6
    assert result.comparisons >= len(X) * 7


def test_batch_independence_fails_with_batch_statistics() -> None:
    result = check_batch_independence(ort_session(_model(True)), X, sizes=range(2, 9))
    assert not result.passed
    assert result.max_abs_prob_diff > 1e-3


def test_parity_with_the_oracle() -> None:
    y = _oracle()(torch.from_numpy(X)).argmax(1).numpy()
    result = check_parity(ort_session(_model(False)), _oracle(), X, y)
    assert result.passed
    assert result.argmax_mismatches == 0
    assert result.accuracy == 1.0
    assert result.max_abs_prob_diff < 1e-6


def test_parity_fails_against_a_different_model() -> None:
    result = check_parity(ort_session(_model(True)), _oracle(), X)
    assert not result.passed
    assert result.max_abs_prob_diff > 1e-5


@pytest.mark.parametrize("n", [0, 1])
def test_batch_independence_needs_two_samples(n: int) -> None:
    from training.errors import UsageError

    with pytest.raises(UsageError):
        check_batch_independence(ort_session(_model(False)), X[:n])

"""The protobuf reader agrees with onnx itself (the card's reference functions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto, helper, numpy_helper

from service import card, onnxfile

DTYPES = [
    np.float32,
    np.float64,
    np.float16,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.bool_,
]


def model_with(initializers: list[TensorProto]) -> onnx.ModelProto:
    graph = helper.make_graph([], "g", [], [], initializers)
    return helper.make_model(graph)


@pytest.mark.parametrize("name", ["tabular.onnx", "image.onnx", "batchnorm.onnx"])
def test_fixture_models(model_dir: Path, name: str) -> None:
    data = (model_dir / name).read_bytes()
    model = onnx.load_from_string(data)
    assert onnxfile.weights_sha256(data) == card.weights_sha256(model)
    assert onnxfile.count_ops(data, "BatchNormalization") == card.count_ops(
        model, "BatchNormalization"
    )
    assert onnxfile.metadata(data) == {p.key: p.value for p in model.metadata_props}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(DTYPES),
            hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
            st.text(min_size=1, max_size=8),
        ),
        min_size=1,
        max_size=4,
        unique_by=lambda t: t[2],
    ),
    st.data(),
)
def test_raw_tensors_of_every_dtype(specs, data) -> None:
    tensors = []
    for dtype, shape, name in specs:
        array = data.draw(hnp.arrays(dtype, shape))
        tensors.append(numpy_helper.from_array(array, name))
    blob = model_with(tensors).SerializeToString()
    assert onnxfile.weights_sha256(blob) == card.weights_sha256(model_with(tensors))


@pytest.mark.parametrize(
    ("dtype", "values"),
    [
        (TensorProto.FLOAT, [1.5, -2.0, 0.0, 3.25]),
        (TensorProto.DOUBLE, [1e300, -1.0, 0.5, 2.0]),
        (TensorProto.INT32, [-1, 2**31 - 1, -(2**31), 0]),
        (TensorProto.INT64, [-1, 2**63 - 1, 7, 0]),
    ],
)
def test_typed_fields(dtype: int, values: list[float]) -> None:
    tensor = helper.make_tensor("t", dtype, [2, 2], values, raw=False)
    model = model_with([tensor])
    assert not tensor.HasField("raw_data")
    assert onnxfile.weights_sha256(model.SerializeToString()) == card.weights_sha256(model)


def test_uncovered_tensors_defer_to_onnx() -> None:
    strings = helper.make_tensor("s", TensorProto.STRING, [1], [b"x"])
    assert onnxfile.weights_sha256(model_with([strings]).SerializeToString()) is None
    half = helper.make_tensor("h", TensorProto.FLOAT16, [1], [1.0], raw=False)
    assert onnxfile.weights_sha256(model_with([half]).SerializeToString()) is None


def test_batchnorm_inside_a_subgraph_is_counted() -> None:
    bn = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])
    branch = helper.make_graph([bn], "branch", [], [])
    node = helper.make_node("If", ["c"], ["z"], then_branch=branch, else_branch=branch)
    model = helper.make_model(helper.make_graph([node], "g", [], []))
    data = model.SerializeToString()
    assert (
        onnxfile.count_ops(data, "BatchNormalization")
        == 2
        == card.count_ops(model, "BatchNormalization")
    )


@pytest.mark.parametrize("blob", [b"\x08", b"\x0a\x05abc", b"\x0f\x00", b"\x08" + b"\xff" * 11])
def test_malformed_protobuf_raises(blob: bytes) -> None:
    with pytest.raises((ValueError, IndexError)):
        onnxfile.metadata(blob)
        onnxfile.weights_sha256(blob)

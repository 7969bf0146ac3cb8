"""The wire-format reader agrees with onnx's own parser."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from bnfold import onnxwire

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / "models" / "digits" / "model.onnx"


def onnx_count(model: onnx.ModelProto, op_type: str) -> int:
    """The oracle: onnx's parsed graph, walked recursively."""

    def walk(graph: onnx.GraphProto) -> int:
        total = 0
        for node in graph.node:
            total += node.op_type == op_type
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    total += walk(attr.g)
                total += sum(walk(g) for g in attr.graphs)
        return total

    return walk(model.graph)


def test_the_default_model() -> None:
    data = DEFAULT_MODEL.read_bytes()
    model = onnx.load_from_string(data)
    assert onnxwire.metadata(data) == {p.key: p.value for p in model.metadata_props}
    for op in ("Conv", "Gemm", "Relu", "BatchNormalization"):
        assert onnxwire.count_ops(data, op) == onnx_count(model, op)
    assert onnxwire.count_ops(data, "Conv") > 0


def test_batchnorm_inside_subgraphs_is_counted() -> None:
    bn = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])
    inner = helper.make_graph([bn], "inner", [], [])
    nested = helper.make_node("If", ["c"], ["w"], then_branch=inner, else_branch=inner)
    branch = helper.make_graph([bn, nested], "branch", [], [])
    node = helper.make_node("If", ["c"], ["z"], then_branch=branch, else_branch=branch)
    model = helper.make_model(helper.make_graph([node], "g", [], []))
    data = model.SerializeToString()
    assert (
        onnxwire.count_ops(data, "BatchNormalization")
        == 6
        == onnx_count(model, "BatchNormalization")
    )


def test_deeply_nested_subgraphs_are_refused_without_recursion() -> None:
    # Built by hand: protobuf's own parsers refuse such depth, onnx.helper cannot build it.
    def field(number: int, payload: bytes) -> bytes:
        return onnxwire._length_delimited(number, payload)

    graph = b""
    for _ in range(onnxwire.MAX_GRAPH_DEPTH + 2):
        attribute = field(1, b"then_branch") + field(6, graph)  # AttributeProto.name, .g
        node = field(4, b"If") + field(5, attribute)  # NodeProto.op_type, .attribute
        graph = field(1, node)  # GraphProto.node
    data = field(7, graph)  # ModelProto.graph
    with pytest.raises(onnxwire.WireError, match="nested deeper"):
        onnxwire.count_ops(data, "BatchNormalization")


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.text(max_size=20), st.text(max_size=200), max_size=5))
def test_appended_metadata_entries_parse_like_onnx(props: dict[str, str]) -> None:
    data = onnx.load_from_string(DEFAULT_MODEL.read_bytes())
    del data.metadata_props[:]
    blob = data.SerializeToString()
    for key, value in props.items():
        blob += onnxwire.metadata_entry(key, value)
    parsed = onnx.load_from_string(blob)
    assert {p.key: p.value for p in parsed.metadata_props} == props == onnxwire.metadata(blob)
    assert parsed.graph == data.graph


MALFORMED = [
    b"\x08",  # a varint key with no value
    b"\x0a\x05abc",  # a length beyond the end
    b"\x0f\x00",  # an end-group wire type
    b"\x08" + b"\xff" * 11,  # a varint longer than 64 bits
    b"\x00\x01",  # field number 0
]


@pytest.mark.parametrize("blob", MALFORMED)
def test_malformed_protobuf_raises(blob: bytes) -> None:
    with pytest.raises(onnxwire.WireError):
        list(onnxwire.fields(blob))
    with pytest.raises(onnxwire.WireError):
        onnxwire.metadata(blob)
    with pytest.raises(onnxwire.WireError):
        onnxwire.count_ops(blob, "Conv")


def test_metadata_that_is_not_utf8_raises() -> None:
    with pytest.raises(onnxwire.WireError, match="UTF-8"):
        onnxwire.metadata(b"\x72\x04\x0a\x02\xff\xfe")


def _branchy_model() -> onnx.ModelProto:
    """input -> Relu -> a (kept); input -> Neg -> Abs -> b (dropped); c = Relu + Neg (dropped)."""
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])
    outs = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1, 3]) for n in "abc"]
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Neg", ["x"], ["n"]),
        helper.make_node("Identity", ["r"], ["a"]),
        helper.make_node("Abs", ["n"], ["b"]),
        helper.make_node("Add", ["r", "n"], ["c"]),
    ]
    unused = onnx.numpy_helper.from_array(np.ones(3, "float32"), "w")
    graph = helper.make_graph(nodes, "g", [x], outs, [unused])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_pruning_keeps_exactly_what_the_remaining_outputs_need() -> None:
    model = _branchy_model()
    pruned = onnx.load_from_string(onnxwire.prune_outputs(model.SerializeToString(), {"b", "c"}))
    onnx.checker.check_model(pruned, full_check=True)
    assert [n.op_type for n in pruned.graph.node] == ["Relu", "Identity"]
    assert [o.name for o in pruned.graph.output] == ["a"]
    assert not pruned.graph.initializer  # unused by what is left
    # The oracle: onnx's own extractor for the same outputs.
    oracle = onnx.utils.Extractor(model).extract_model(["x"], ["a"])
    assert [n.op_type for n in oracle.graph.node] == [n.op_type for n in pruned.graph.node]
    assert pruned.opset_import == model.opset_import and pruned.ir_version == model.ir_version


def test_a_graph_with_subgraphs_is_not_pruned() -> None:
    branch = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "b", [], [])
    node = helper.make_node("If", ["c"], ["z"], then_branch=branch, else_branch=branch)
    model = helper.make_model(helper.make_graph([node], "g", [], []))
    assert onnxwire.prune_outputs(model.SerializeToString(), {"z"}) is None

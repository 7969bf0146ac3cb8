"""The wire-format reader agrees with onnx's own parser."""

from __future__ import annotations

from pathlib import Path

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

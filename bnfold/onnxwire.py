"""Just enough of the ONNX protobuf wire format to check a model without ``import onnx``.

The service needs three facts from a file: its metadata (the card), the top-level
fields the digest covers, and the number of BatchNormalization nodes. Importing
``onnx`` for them costs about 0.1 s of startup and 8 MiB of resident memory in
every worker, so this module walks the wire format directly. It never recurses on
the file's own nesting beyond the graph attributes it counts (bounded by
``MAX_GRAPH_DEPTH``), and every malformed input raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["WireError", "count_ops", "fields", "metadata", "metadata_entry", "prune_outputs"]

# Field numbers from onnx.proto.
MODEL_GRAPH, MODEL_METADATA = 7, 14
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_OUTPUT, _GRAPH_VALUE_INFO = 1, 5, 12, 13
_GRAPH_SPARSE_INITIALIZER = 15
_NODE_INPUT, _NODE_OUTPUT, _NODE_OP_TYPE, _NODE_ATTRIBUTE = 1, 2, 4, 5
_VALUE_NAME, _TENSOR_NAME = 1, 8
_ATTR_G, _ATTR_GRAPHS = 6, 11
MAX_GRAPH_DEPTH = 32  # subgraphs (If/Loop/Scan bodies) nested deeper are refused


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message of the expected shape."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("malformed varint")


def fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) for each field of one message, in file order.

    Varint fields give an ``int``; length-delimited and fixed-size fields a
    ``memoryview`` of their bytes. Groups (wire types 3/4) are refused.
    """
    buf = memoryview(data)
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        wire = key & 7
        value: int | memoryview
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise WireError("truncated message")
            value = buf[pos : pos + size]
            pos += size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > end:
                raise WireError("truncated message")
            value = buf[pos : pos + size]
            pos += size
        else:
            raise WireError(f"unsupported wire type {wire}")
        if key >> 3 == 0:
            raise WireError("field number 0")
        yield key >> 3, wire, value


def _messages(buf: memoryview, number: int) -> Iterator[memoryview]:
    for field, wire, value in fields(buf):
        if field == number and wire == 2:
            assert isinstance(value, memoryview)
            yield value


def metadata(data: bytes) -> dict[str, str]:
    """``metadata_props`` as a dict (the last value wins, as in onnx)."""
    props: dict[str, str] = {}
    for entry in _messages(memoryview(data), MODEL_METADATA):
        parts = {f: bytes(v) for f, w, v in fields(entry) if w == 2 and isinstance(v, memoryview)}
        try:
            props[parts.get(1, b"").decode()] = parts.get(2, b"").decode()
        except UnicodeDecodeError:
            raise WireError("metadata is not UTF-8") from None
    return props


def count_ops(data: bytes, op_type: str) -> int:
    """Nodes of ``op_type`` in the main graph and every subgraph (iteratively)."""
    wanted = op_type.encode()
    total = 0
    pending = [(g, 0) for g in _messages(memoryview(data), MODEL_GRAPH)]
    while pending:
        graph, depth = pending.pop()
        if depth > MAX_GRAPH_DEPTH:
            raise WireError(f"subgraphs nested deeper than {MAX_GRAPH_DEPTH}")
        for node in _messages(graph, _GRAPH_NODE):
            for field, wire, value in fields(node):
                if wire != 2:
                    continue
                assert isinstance(value, memoryview)
                if field == _NODE_OP_TYPE:
                    total += bytes(value) == wanted
                elif field == _NODE_ATTRIBUTE:
                    pending.extend(
                        (v, depth + 1)
                        for f, w, v in fields(value)
                        if f in (_ATTR_G, _ATTR_GRAPHS) and w == 2 and isinstance(v, memoryview)
                    )
    return total


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def metadata_entry(key: str, value: str) -> bytes:
    """One ``metadata_props`` entry, encoded as a top-level ``ModelProto`` field.

    Appending it to a serialized model adds the entry: protobuf parsers accept
    fields in any order and append repeated ones.
    """
    entry = _length_delimited(1, key.encode()) + _length_delimited(2, value.encode())
    return _length_delimited(MODEL_METADATA, entry)


def _field(number: int, wire: int, value: int | memoryview) -> bytes:
    key = _encode_varint(number << 3 | wire)
    if isinstance(value, int):
        return key + _encode_varint(value)
    if wire == 2:
        return key + _encode_varint(len(value)) + bytes(value)
    return key + bytes(value)


def _strings(message: memoryview, number: int) -> list[str]:
    return [bytes(v).decode() for v in _messages(message, number)]


def _has_subgraph(node: memoryview) -> bool:
    return any(
        f in (_ATTR_G, _ATTR_GRAPHS)
        for attribute in _messages(node, _NODE_ATTRIBUTE)
        for f, _, _ in fields(attribute)
    )


def prune_outputs(data: bytes, drop: set[str]) -> bytes | None:
    """The model without the graph outputs ``drop`` and the nodes only they needed.

    ONNX Runtime computes every node of a graph whatever outputs a call asks for;
    this gives it a graph that computes only what remains. None when the graph has
    subgraphs (If/Loop bodies may read any outer value, so nothing is pruned safely).
    """
    out = bytearray()
    for number, wire, value in fields(data):
        if number == MODEL_GRAPH and isinstance(value, memoryview):
            graph = _prune_graph(value, drop)
            if graph is None:
                return None
            out += _length_delimited(MODEL_GRAPH, graph)
        else:
            out += _field(number, wire, value)
    return bytes(out)


def _prune_graph(graph: memoryview, drop: set[str]) -> bytes | None:
    nodes = list(_messages(graph, _GRAPH_NODE))
    if any(_has_subgraph(node) for node in nodes):
        return None
    needed = {
        name
        for output in _messages(graph, _GRAPH_OUTPUT)
        for name in _strings(output, _VALUE_NAME)
        if name not in drop
    }
    kept: set[int] = set()
    for index in range(len(nodes) - 1, -1, -1):  # ONNX nodes are topologically sorted
        if needed.intersection(_strings(nodes[index], _NODE_OUTPUT)):
            kept.add(index)
            needed.update(_strings(nodes[index], _NODE_INPUT))
    out = bytearray()
    node_index = 0
    for number, wire, value in fields(graph):
        if number == _GRAPH_NODE:
            node_index += 1
            if node_index - 1 not in kept:
                continue
        elif number in (_GRAPH_OUTPUT, _GRAPH_VALUE_INFO) and isinstance(value, memoryview):
            names = _strings(value, _VALUE_NAME)
            if number == _GRAPH_OUTPUT and drop.intersection(names):
                continue
            if number == _GRAPH_VALUE_INFO and not needed.intersection(names):
                continue
        elif (
            number == _GRAPH_INITIALIZER
            and isinstance(value, memoryview)
            and not needed.intersection(_strings(value, _TENSOR_NAME))
        ):
            continue
        out += _field(number, wire, value)
    return bytes(out)

"""Just enough of the ONNX protobuf wire format to check a model without ``import onnx``.

The service needs three facts from the file: the card (``metadata_props``), the
BatchNormalization count and the weights hash. Importing ``onnx`` for them costs
about 0.1 s of startup and 8 MiB of resident memory in every worker, so this
module walks the protobuf wire format directly. ``weights_sha256`` returns
``None`` for anything it does not cover (external data, exotic dtypes); the
caller then falls back to ``service.card.weights_sha256`` with ``onnx``, so a
file is never judged by a partial reading.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np

__all__ = ["count_ops", "metadata", "weights_sha256"]

# Field numbers from onnx.proto.
_MODEL_GRAPH, _MODEL_METADATA = 7, 14
_GRAPH_NODE, _GRAPH_INITIALIZER = 1, 5
_NODE_OP_TYPE, _NODE_ATTRIBUTE = 4, 5
_ATTR_G, _ATTR_GRAPHS = 6, 11
_T_DIMS, _T_TYPE, _T_SEGMENT, _T_FLOAT, _T_INT32, _T_INT64 = 1, 2, 3, 4, 5, 7
_T_NAME, _T_RAW, _T_DOUBLE, _T_EXTERNAL, _T_LOCATION = 8, 9, 10, 13, 14

# TensorProto.DataType -> little-endian numpy dtype, for raw_data.
_RAW = {
    1: "<f4",
    2: "u1",
    3: "i1",
    4: "<u2",
    5: "<i2",
    6: "<i4",
    7: "<i8",
    9: "?",
    10: "<f2",
    11: "<f8",
    12: "<u4",
    13: "<u8",
}
_FLOAT, _INT32, _INT64, _DOUBLE = 1, 6, 7, 11


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("malformed varint")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) for each field of one message."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        wire = key & 7
        value: int | memoryview
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value = buf[pos : pos + size]
            pos += size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value = buf[pos : pos + size]
            pos += size
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end:
            raise ValueError("truncated message")
        yield key >> 3, wire, value


def _blob(value: int | memoryview) -> bytes:
    if not isinstance(value, memoryview):
        raise ValueError("expected a length-delimited field")
    return bytes(value)


def _messages(buf: memoryview, number: int) -> Iterator[memoryview]:
    for field, wire, value in _fields(buf):
        if field == number and wire == 2:
            assert isinstance(value, memoryview)
            yield value


def metadata(data: bytes) -> dict[str, str]:
    """``metadata_props`` as a dict (the last value wins, as in onnx)."""
    props: dict[str, str] = {}
    for entry in _messages(memoryview(data), _MODEL_METADATA):
        fields = {f: bytes(v) for f, w, v in _fields(entry) if w == 2 and isinstance(v, memoryview)}
        props[fields.get(1, b"").decode()] = fields.get(2, b"").decode()
    return props


def count_ops(data: bytes, op_type: str) -> int:
    """Nodes of ``op_type`` in the main graph and every subgraph."""
    wanted = op_type.encode()

    def walk(graph: memoryview) -> int:
        total = 0
        for node in _messages(graph, _GRAPH_NODE):
            for field, wire, value in _fields(node):
                if field == _NODE_OP_TYPE and wire == 2:
                    total += _blob(value) == wanted
                elif field == _NODE_ATTRIBUTE and wire == 2:
                    assert isinstance(value, memoryview)
                    for f, w, v in _fields(value):
                        if f in (_ATTR_G, _ATTR_GRAPHS) and w == 2:
                            assert isinstance(v, memoryview)
                            total += walk(v)
        return total

    return sum(walk(g) for g in _messages(memoryview(data), _MODEL_GRAPH))


def _ints(values: list[int | memoryview], bits: int) -> list[int]:
    """Varints, packed or not, as signed integers of ``bits`` bits."""
    out: list[int] = []
    for value in values:
        if isinstance(value, int):
            out.append(value)
            continue
        pos = 0
        while pos < len(value):
            number, pos = _varint(value, pos)
            out.append(number)
    mask, sign = (1 << bits) - 1, 1 << (bits - 1)
    return [((v & mask) ^ sign) - sign for v in out]


def _tensor(buf: memoryview) -> tuple[str, np.ndarray] | None:
    """(name, array) as ``onnx.numpy_helper.to_array`` gives it, or None if not covered."""
    parts: dict[int, list[int | memoryview]] = {}
    for field, _, value in _fields(buf):
        parts.setdefault(field, []).append(value)
    if _T_SEGMENT in parts or _T_EXTERNAL in parts or parts.get(_T_LOCATION, [0])[-1] != 0:
        return None
    dtype = parts.get(_T_TYPE, [0])[-1]
    dims = tuple(_ints(parts.get(_T_DIMS, []), 64))
    name_parts = parts.get(_T_NAME, [])
    name = _blob(name_parts[-1]).decode() if name_parts else ""
    if _T_RAW in parts:
        if dtype not in _RAW:
            return None
        raw = _blob(parts[_T_RAW][-1])
        return name, np.frombuffer(raw, dtype=_RAW[dtype]).reshape(dims)
    if dtype in (_FLOAT, _DOUBLE):
        chunks = parts.get(_T_FLOAT if dtype == _FLOAT else _T_DOUBLE, [])
        raw = b"".join(bytes(c) for c in chunks if isinstance(c, memoryview))
        return name, np.frombuffer(raw, dtype=_RAW[dtype]).reshape(dims)
    if dtype in (_INT32, _INT64):
        bits, field = (32, _T_INT32) if dtype == _INT32 else (64, _T_INT64)
        return name, np.asarray(_ints(parts.get(field, []), bits), dtype=_RAW[dtype]).reshape(dims)
    return None


def weights_sha256(data: bytes) -> str | None:
    """``service.card.weights_sha256`` of the file, or None where this reader cannot tell."""
    tensors = []
    for graph in _messages(memoryview(data), _MODEL_GRAPH):
        for initializer in _messages(graph, _GRAPH_INITIALIZER):
            tensor = _tensor(initializer)
            if tensor is None:
                return None
            tensors.append(tensor)
    digest = hashlib.sha256()
    for name, array in sorted(tensors, key=lambda t: t[0]):
        array = np.ascontiguousarray(array)
        digest.update(name.encode())
        digest.update(str(array.dtype.newbyteorder("<")).encode())
        digest.update(repr(tuple(array.shape)).encode())
        digest.update(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
    return digest.hexdigest()

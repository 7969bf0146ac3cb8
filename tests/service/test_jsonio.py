"""JSON parsing and encoding: orjson and the standard-library fallback agree."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service import jsonio
from service.errors import BadRequest

PARSERS = [jsonio.loads, jsonio.loads_stdlib]


@pytest.mark.parametrize("loads", PARSERS)
@pytest.mark.parametrize(
    "body", [b"NaN", b'{"a": [1, Infinity]}', b"[-Infinity]", b'{"a":NaN}', b"[1,NaN,2]"]
)
def test_non_finite_constants_are_400_and_named(loads, body: bytes) -> None:
    # They are not JSON (RFC 8259), so the body is malformed: 400, with the reason.
    with pytest.raises(BadRequest, match="NaN and Infinity are not JSON numbers"):
        loads(body)


@pytest.mark.parametrize("loads", PARSERS)
@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"\xff", b"[" * 100_000, b"{'a': 1}", b'{"image": "NaN', b'"\\ud800"', b"[1e400,"],
)
def test_malformed_bodies_are_400(loads, body: bytes) -> None:
    with pytest.raises(BadRequest, match="not valid JSON"):
        loads(body)


@pytest.mark.parametrize("loads", PARSERS)
def test_malformed_text_mentioning_nan_is_not_called_nan(loads) -> None:
    with pytest.raises(BadRequest) as info:
        loads(b'{"image": "NaN')
    assert "NaN" not in info.value.message


@pytest.mark.parametrize("loads", PARSERS)
@pytest.mark.parametrize(
    ("body", "value"), [(b"1e400", [math.inf]), (b"[-1e400, 1]", [-math.inf, 1])]
)
def test_numbers_beyond_a_double_are_json_and_parse_to_infinity(loads, body: bytes, value) -> None:
    # Valid JSON; refused later as out of float32 range (422), like 1e39.
    parsed = loads(body)
    assert (parsed if isinstance(parsed, list) else [parsed]) == value


@pytest.mark.parametrize("loads", PARSERS)
def test_utf16_is_not_json(loads) -> None:
    with pytest.raises(BadRequest, match="not UTF-8"):
        loads('{"a": 1}'.encode("utf-16"))


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**53), 2**53)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        max_leaves=20,
    )
)
def test_both_encoders_round_trip_the_same_values(value) -> None:
    assert json.loads(jsonio.dumps(value)) == json.loads(jsonio.dumps_stdlib(value)) == value
    assert jsonio.loads(jsonio.dumps(value)) == jsonio.loads_stdlib(jsonio.dumps(value))

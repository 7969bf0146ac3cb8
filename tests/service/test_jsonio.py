"""JSON parsing and encoding: orjson and the standard-library fallback agree."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service import jsonio
from service.errors import BadRequest, InvalidInput

PARSERS = [jsonio.loads, jsonio.loads_stdlib]


@pytest.mark.parametrize("loads", PARSERS)
@pytest.mark.parametrize("body", [b"NaN", b'{"a": [1, Infinity]}', b"[-Infinity]"])
def test_non_finite_constants_are_422(loads, body: bytes) -> None:
    with pytest.raises(InvalidInput, match="NaN and Infinity are not allowed"):
        loads(body)


@pytest.mark.parametrize("loads", PARSERS)
@pytest.mark.parametrize("body", [b"", b"{", b"\xff", b"[" * 100_000, b"{'a': 1}"])
def test_malformed_bodies_are_400(loads, body: bytes) -> None:
    with pytest.raises(BadRequest, match="not valid JSON"):
        loads(body)


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

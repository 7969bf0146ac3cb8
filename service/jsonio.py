"""JSON in and out: orjson when installed (about 5x faster here), else the standard library.

Both refuse NaN/Infinity on input with the same errors, and emit the same
values (Python floats, shortest round-trip form) on output.
"""

from __future__ import annotations

import json
from typing import Any

from service.errors import BadRequest, InvalidInput

try:
    import orjson
except ImportError:  # pragma: no cover - exercised by forcing the fallback in tests
    orjson = None  # type: ignore[assignment]

_NON_FINITE = "NaN and Infinity are not allowed: values must be finite numbers"
_stdlib_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _reject_constant(name: str) -> float:
    raise InvalidInput(_NON_FINITE)


def _invalid(body: bytes) -> Exception:
    # orjson rejects NaN/Infinity as plain syntax errors: name the reason when it is that.
    if b"NaN" in body or b"Infinity" in body:
        return InvalidInput(_NON_FINITE)
    return BadRequest("the body is not valid JSON")


def loads_stdlib(body: bytes) -> Any:
    """``loads`` with the standard library only."""
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # JSONDecodeError, bad UTF-8, absurd nesting
        raise _invalid(body) from None


def dumps_stdlib(value: Any) -> bytes:
    """``dumps`` with the standard library only."""
    return _stdlib_encode(value).encode()


if orjson is not None:
    _orjson_loads, _orjson_dumps, _OrjsonError = orjson.loads, orjson.dumps, orjson.JSONDecodeError

    def loads(body: bytes) -> Any:
        """Parse a JSON body; 400 if malformed, 422 for NaN/Infinity."""
        try:
            return _orjson_loads(body)
        except _OrjsonError:
            raise _invalid(body) from None

    def dumps(value: Any) -> bytes:
        """Encode a response (values are plain Python types, all finite)."""
        return _orjson_dumps(value)

else:  # pragma: no cover
    loads = loads_stdlib
    dumps = dumps_stdlib

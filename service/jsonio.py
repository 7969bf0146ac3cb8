"""JSON in and out: orjson when installed (about 5x faster here), else the standard library.

The one rule for bodies (``service.errors``): what is not JSON is a 400, and
NaN/Infinity are not JSON (RFC 8259), so they are a 400 too, named as such. A
number too large for a double (``1e400``) *is* JSON: it parses to infinity,
which the model-aware validation then refuses as out of float32 range (422),
like ``1e39``. Both parsers answer alike, and both emit the same values (Python
floats, shortest round-trip form) on output.
"""

from __future__ import annotations

import json
from typing import Any

from service.errors import BadRequest

try:
    import orjson
except ImportError:  # pragma: no cover - exercised by forcing the fallback in tests
    orjson = None  # type: ignore[assignment]

NOT_JSON = "the body is not valid JSON"
_NON_FINITE = f"{NOT_JSON}: NaN and Infinity are not JSON numbers"
_TOO_DEEP = f"{NOT_JSON}: it is nested too deeply"
_NOT_UTF8 = f"{NOT_JSON}: it is not UTF-8 text"
_stdlib_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _reject_constant(name: str) -> float:
    raise BadRequest(_NON_FINITE)


def loads_stdlib(body: bytes) -> Any:
    """``loads`` with the standard library only."""
    try:
        text = body.decode("utf-8")  # json.loads would also take UTF-16/32: JSON is UTF-8
        value = json.loads(text, parse_constant=_reject_constant)
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # lone surrogates, as orjson
    except UnicodeDecodeError:
        raise BadRequest(_NOT_UTF8) from None
    except UnicodeEncodeError:  # a lone surrogate escape ("\\ud800")
        raise BadRequest(NOT_JSON) from None
    except RecursionError:
        raise BadRequest(_TOO_DEEP) from None
    except ValueError:  # JSONDecodeError
        raise BadRequest(NOT_JSON) from None
    return value


def dumps_stdlib(value: Any) -> bytes:
    """``dumps`` with the standard library only."""
    return _stdlib_encode(value).encode()


def _why(message: str, text: str, pos: int) -> str:
    """The precise 400 message for one of orjson's decoding errors."""
    if "depth limit" in message:
        return _TOO_DEEP
    if "UTF-8" in message:
        return _NOT_UTF8
    if text[pos : pos + 8].startswith(("NaN", "Infinity")):
        return _NON_FINITE
    return NOT_JSON


if orjson is not None:
    _orjson_loads, _orjson_dumps, _OrjsonError = orjson.loads, orjson.dumps, orjson.JSONDecodeError

    def loads(body: bytes) -> Any:
        """Parse a JSON body; ``BadRequest`` (400) if it is not JSON."""
        try:
            return _orjson_loads(body)
        except _OrjsonError as exc:
            message, text, pos = str(exc), exc.doc or "", exc.pos or 0
        if "infinity when parsed as double" in message:
            # Valid JSON holding a number beyond a double: parse it as infinity.
            return loads_stdlib(body)
        raise BadRequest(_why(message, text, pos))

    def dumps(value: Any) -> bytes:
        """Encode a response (values are plain Python types, all finite)."""
        return _orjson_dumps(value)

else:  # pragma: no cover
    loads = loads_stdlib
    dumps = dumps_stdlib

"""Model-aware validation: JSON values -> float32 arrays of the card's sample shape.

Everything here raises ``InvalidInput`` (422) with a message naming the field and
the expected shape, and never echoes the input (no key, no value). Numbers must be
JSON numbers (not booleans or strings), finite, and within float32 range.

A tabular sample is a row of RAW feature values, a list in the card's feature
order or an object by feature name, encoded exactly as training encoded its
rows (``training.tabular.encode``): a numeric feature is its number, a
categorical one is one-hot over the card's ``categories`` (the category string;
a JSON integer is read as its decimal text), and ``null`` takes the feature's
``fill`` when the card has one. The Open Inference Protocol takes the encoded
tensor instead (``service.oip_infer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bnfold.card import FLOAT32_MAX, CategoricalFeature, InputSpec, NumericFeature, TabularSpec
from service.errors import InvalidInput, ServiceError

_NUMBER_TYPES = frozenset((int, float))
_LISTED = 20  # categories a message lists before "(+N more)"

_JSON_TYPES = {
    str: "string",
    bool: "boolean",
    type(None): "null",
    dict: "object",
    list: "array",
    int: "number",
    float: "number",
}


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def check_numbers(values: list[Any], field: str, error: type[ServiceError] = InvalidInput) -> None:
    """``error`` naming the first item of ``values`` that is not a JSON number."""
    if not _NUMBER_TYPES.issuperset(map(type, values)):
        bad = next(i for i, v in enumerate(values) if type(v) not in _NUMBER_TYPES)
        kind = json_type(values[bad])
        raise error(f"{field}[{bad}] must be a number, got {kind}")


def to_float32(values: Any, shape: tuple[int, ...], field: str) -> np.ndarray:
    """A finite float32 array of ``shape`` from numbers (floats/ints) already type-checked."""
    try:
        wide = np.array(values, dtype=np.float64)
    except (OverflowError, ValueError):  # ints beyond float64
        raise InvalidInput(f"{field}: a value is out of float32 range") from None
    if not np.abs(wide).max() <= FLOAT32_MAX:  # NaN fails too
        raise InvalidInput(f"{field}: values must be finite and within float32 range")
    return wide.astype(np.float32).reshape(shape)


@dataclass(frozen=True)
class _Slot:
    """One feature: where its columns start, its fill, and its categories (categorical only)."""

    name: str
    offset: int
    fill: float | None  # numeric: the value; categorical: the index of the category
    index: dict[str, int] | None
    allowed: str


class RowEncoder:
    """One row of raw feature values (in the card's order) -> the model's tensor row."""

    def __init__(self, spec: TabularSpec) -> None:
        self.names = [f.name for f in spec.features]
        self.width = len(spec.columns)
        self.missing = spec.missing
        # Numbers only and no fill: the values ARE the tensor (the caller's fast path).
        self.plain = all(isinstance(f, NumericFeature) and f.fill is None for f in spec.features)
        self._slots: list[_Slot] = []
        offset = 0
        for feature in spec.features:
            if isinstance(feature, CategoricalFeature):
                index = {c: i for i, c in enumerate(feature.categories)}
                fill = None if feature.fill is None else float(index[feature.fill])
                self._slots.append(_Slot(feature.name, offset, fill, index, _allowed(feature)))
                offset += len(feature.categories)
            else:
                self._slots.append(_Slot(feature.name, offset, feature.fill, None, ""))
                offset += 1

    def encode(self, values: list[Any], fields: list[str]) -> list[float]:
        """``values[k]`` is feature k's raw value, ``fields[k]`` how a message names it."""
        out = [0.0] * self.width
        for slot, value, field in zip(self._slots, values, fields, strict=True):
            kind = type(value)
            if value is None:
                if slot.fill is None:
                    raise InvalidInput(
                        f"{field} is null, and the model has no fill value for feature "
                        f"{slot.name!r} (trained with --missing {self.missing})"
                    )
                if slot.index is None:
                    out[slot.offset] = slot.fill
                else:
                    out[slot.offset + int(slot.fill)] = 1.0
            elif slot.index is None:
                if kind not in _NUMBER_TYPES:
                    raise InvalidInput(f"{field} must be a number, got {json_type(value)}")
                out[slot.offset] = value
            else:
                if kind is not str and kind is not int:
                    raise InvalidInput(
                        f"{field} must be a category string, got {json_type(value)}; "
                        f"allowed: {slot.allowed}"
                    )
                position = slot.index.get(value if kind is str else str(value))
                if position is None:
                    raise InvalidInput(f"{field}: unknown category; allowed: {slot.allowed}")
                out[slot.offset + position] = 1.0
        return out


def _allowed(feature: CategoricalFeature) -> str:
    shown = ", ".join(repr(c) for c in feature.categories[:_LISTED])
    more = len(feature.categories) - _LISTED
    return shown + (f" (+{more} more: see GET /model)" if more > 0 else "")


class SampleCodec:
    """Turns request JSON into model input, for one card's ``InputSpec``."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec
        self.sample_shape: tuple[int, ...] = spec.sample_shape
        self.size = int(np.prod(self.sample_shape))
        self.key = "features" if spec.kind == "tabular" else "image"
        self.rows = None if spec.tabular is None else RowEncoder(spec.tabular)
        self.names = [] if self.rows is None else self.rows.names  # raw feature names
        self.count = len(self.names)  # values in a tabular list
        self._index = {name: i for i, name in enumerate(self.names)}
        self.grid = spec.grid
        self.expected = self._describe()

    def _describe(self) -> str:
        if self.rows is not None:
            kinds = "numbers" if self.rows.plain else "values (numbers, category strings, null)"
            return f"a list of {self.count} {kinds} or an object with the feature names"
        dims = " x ".join(str(d) for d in self.grid)
        return f"a nested list of {dims} numbers"

    def sample(self, payload: Any, where: str = "") -> np.ndarray:
        """One request body (``{"features": ...}`` or ``{"image": ...}``) -> (1, *shape)."""
        if type(payload) is not dict:
            raise InvalidInput(
                f"{where.rstrip('.') or 'body'} must be a JSON object with {self.key!r}"
            )
        if len(payload) != 1 or self.key not in payload:
            if any(k != self.key for k in payload):
                raise InvalidInput(f"{where}unexpected field: expected only {self.key!r}")
            raise InvalidInput(f"{where}missing field {self.key!r}: expected {self.expected}")
        field = f"{where}{self.key}"
        value = payload[self.key]
        if self.rows is not None:
            array = self._tabular(self.rows, value, field)
        else:
            array = self._image(value, field)
        return array.reshape((1, *self.sample_shape))

    def _tabular(self, rows: RowEncoder, value: Any, field: str) -> np.ndarray:
        if type(value) is dict:
            return self._named(rows, value, field)
        if type(value) is not list or len(value) != self.count:
            got = f"{len(value)} values" if type(value) is list else json_type(value)
            raise InvalidInput(f"{field}: expected {self.expected}, got {got}")
        if rows.plain:
            check_numbers(value, field)
            return to_float32(value, self.sample_shape, field)
        fields = [f"{field}[{i}]" for i in range(self.count)]
        return to_float32(rows.encode(value, fields), self.sample_shape, field)

    def _named(self, rows: RowEncoder, value: dict[str, Any], field: str) -> np.ndarray:
        index = self._index
        if any(k not in index for k in value):
            raise InvalidInput(f"{field}: a name is not one of the model's features")
        if len(value) != self.count:
            missing = [n for n in self.names if n not in value]
            shown = ", ".join(repr(n) for n in missing[:3])
            more = f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
            raise InvalidInput(f"{field}: missing feature(s) {shown}{more}")
        ordered = [value[n] for n in self.names]
        if rows.plain:
            for name, v in zip(self.names, ordered, strict=True):
                if type(v) not in _NUMBER_TYPES:
                    raise InvalidInput(f"{field}.{name} must be a number, got {json_type(v)}")
            return to_float32(ordered, self.sample_shape, field)
        fields = [f"{field}.{name}" for name in self.names]
        return to_float32(rows.encode(ordered, fields), self.sample_shape, field)

    def _image(self, value: Any, field: str) -> np.ndarray:
        if (
            len(self.grid) < len(self.sample_shape)
            and type(value) is list
            and len(value) == 1
            and type(value[0]) is list
            and value[0]
            and type(value[0][0]) is list
        ):
            value = value[0]  # [C=1][H][W] given in full
        if not _is_grid(value, self.grid):  # the common case in one pass; details if not
            _check_nested(value, self.grid, field, self.expected)
        return to_float32(value, self.sample_shape, field)


def _is_grid(value: Any, shape: tuple[int, ...]) -> bool:
    """True if ``value`` is exactly an (H, W) list of lists of numbers."""
    if len(shape) != 2 or type(value) is not list or len(value) != shape[0]:
        return False
    width, numbers = shape[1], _NUMBER_TYPES
    return all(
        type(row) is list and len(row) == width and numbers.issuperset(map(type, row))
        for row in value
    )


def _check_nested(value: Any, shape: tuple[int, ...], field: str, expected: str) -> None:
    """Checks that ``value`` is lists nested exactly as ``shape`` with numbers at the leaves."""
    if type(value) is not list or len(value) != shape[0]:
        got = f"{len(value)} items" if type(value) is list else json_type(value)
        raise InvalidInput(f"{field}: expected {expected}, got {got}")
    if len(shape) == 1:
        check_numbers(value, field)
        return
    for i, item in enumerate(value):
        _check_nested(item, shape[1:], f"{field}[{i}]", expected)

"""SampleCodec: JSON values -> float32 arrays, and every refusal."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bnfold.card import ModelCard
from service.errors import InvalidInput
from service.inputs import SampleCodec, to_float32


def test_tabular_list_and_names_agree(tabular_card: ModelCard) -> None:
    codec = SampleCodec(tabular_card.input)
    values = [0.5, -1, 2.25, 3]
    by_list = codec.sample({"features": values})
    by_name = codec.sample(
        {"features": dict(zip(reversed(codec.names), values[::-1], strict=True))}
    )
    assert by_list.dtype == np.float32 and by_list.shape == (1, 4)
    assert np.array_equal(by_list, by_name)


def test_image_with_and_without_channel_axis(image_card: ModelCard) -> None:
    codec = SampleCodec(image_card.input)
    grid = [[float(r * 8 + c) for c in range(8)] for r in range(8)]
    assert np.array_equal(codec.sample({"image": grid}), codec.sample({"image": [grid]}))
    assert codec.sample({"image": grid}).shape == (1, 1, 8, 8)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2, 3, 4], "body must be a JSON object with 'features'"),
        ({}, "missing field 'features': expected a list of 4 numbers"),
        ({"features": [1, 2, 3, 4], "x": 1}, "unexpected field: expected only 'features'"),
        ({"feature": [1, 2, 3, 4]}, "unexpected field: expected only 'features'"),
        (
            {"features": [1, 2, 3]},
            "features: expected a list of 4 numbers or an object with "
            "the feature names, got 3 values",
        ),
        ({"features": "1,2,3,4"}, "got string"),
        ({"features": [1, 2, "3", 4]}, "features[2] must be a number, got string"),
        ({"features": [1, None, 3, 4]}, "features[1] must be a number, got null"),
        ({"features": [1, 2, 3, False]}, "features[3] must be a number, got boolean"),
        ({"features": [1, 2, 3, [4]]}, "features[3] must be a number, got array"),
        ({"features": [1, 2, 3, 1e39]}, "within float32 range"),
        ({"features": [1, 2, 3, 10**400]}, "out of float32 range"),
        ({"features": [1, 2, 3, float("inf")]}, "finite"),
        (
            {"features": {"sepal_length": 1}},
            "missing feature(s) 'sepal_width', 'petal_length', 'petal_width'",
        ),
        ({"features": {"nope": 1}}, "features: a name is not one of the model's features"),
        (
            {
                "features": {
                    "sepal_length": 1,
                    "sepal_width": 1,
                    "petal_length": 1,
                    "petal_width": "1",
                }
            },
            "features.petal_width must be a number, got string",
        ),
    ],
)
def test_tabular_refusals(tabular_card: ModelCard, payload: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        SampleCodec(tabular_card.input).sample(payload)
    assert message in info.value.message


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ([[0.0] * 8] * 7, "image: expected a nested list of 8 x 8 numbers, got 7 items"),
        (
            [[0.0] * 8] * 7 + [[0.0] * 7],
            "image[7]: expected a nested list of 8 x 8 numbers, got 7 items",
        ),
        ([[0.0] * 8] * 7 + [[0.0] * 7 + [True]], "image[7][7] must be a number, got boolean"),
        ([0.0] * 64, "image: expected a nested list of 8 x 8 numbers, got 64 items"),
        ([[[0.0] * 8] * 8] * 2, "image: expected a nested list of 8 x 8 numbers, got 2 items"),
        ({"a": 1}, "got object"),
    ],
)
def test_image_refusals(image_card: ModelCard, image: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        SampleCodec(image_card.input).sample({"image": image})
    assert message in info.value.message


@pytest.mark.parametrize(
    "payload",
    [
        {"features": {"s3cr3t": 1}},
        {"s3cr3t": [1, 2, 3, 4]},
        {"features": [1, 2, 3, 4], "s3cr3t": 1},
        {"features": ["s3cr3t", 2, 3, 4]},
        {"features": {"sepal_length": "s3cr3t"}},
    ],
)
def test_messages_never_echo_keys_or_values(tabular_card: ModelCard, payload: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        SampleCodec(tabular_card.input).sample(payload)
    assert "s3cr3t" not in info.value.message


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=4, max_size=4))
def test_any_finite_float32_round_trips(values: list[float]) -> None:
    assert to_float32(values, (4,), "f").tolist() == values


def test_a_single_short_row_is_not_taken_for_a_channel_axis(image_card: ModelCard) -> None:
    # [[1, 2]] is one row of an 8x8 image, not a channel axis wrapped around 2 values.
    with pytest.raises(InvalidInput, match=r"image: expected .*, got 1 items"):
        SampleCodec(image_card.input).sample({"image": [[1, 2]]})

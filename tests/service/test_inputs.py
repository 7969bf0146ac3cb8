"""SampleCodec: JSON values -> float32 arrays, and every refusal."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import svc_models
from hypothesis import given, settings
from hypothesis import strategies as st

from bnfold.card import CategoricalFeature, InputSpec, ModelCard, NumericFeature, TabularSpec
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


MIXED_NAMES = ["island", "bill length (mm)", "sex", "year", "mass"]


def mixed_codec() -> SampleCodec:
    return SampleCodec(svc_models.mixed_model()[1].input)


def test_raw_rows_by_name_and_as_a_list_are_one_hot_encoded() -> None:
    codec = mixed_codec()
    row = {"mass": 3.5, "year": "2007", "sex": "male", "bill length (mm)": 39.1, "island": "Dream"}
    want = [[0, 1, 0, 39.1, 0, 1, 1, 0, 3.5]]
    np.testing.assert_array_equal(codec.sample({"features": row}), np.float32(want))
    values = ["Dream", 39.1, "male", "2007", 3.5]
    np.testing.assert_array_equal(codec.sample({"features": values}), np.float32(want))
    # null takes the card's fill; an integer is read as its text ("2007").
    filled = codec.sample({"features": [None, None, "female", 2007, 1]})
    np.testing.assert_array_equal(filled, np.float32([[1, 0, 0, 44.0, 1, 0, 1, 0, 1]]))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            ["Dream", 1, None, "2007", 1],
            "features[2] is null, and the model has no fill value for feature 'sex' "
            "(trained with --missing mean)",
        ),
        (
            ["Dream", 1, "male", "2007", None],
            "features[4] is null, and the model has no fill value for feature 'mass'",
        ),
        (
            ["Atlantis", 1, "male", "2007", 1],
            "features[0]: unknown category; allowed: 'Biscoe', 'Dream', 'Torgersen'",
        ),
        (["Dream", 1, "male", 2009, 1], "features[3]: unknown category; allowed: '2007', '2008'"),
        (["Dream", 1, "male", 2007.0, 1], "features[3] must be a category string, got number"),
        (["Dream", "1", "male", "2007", 1], "features[1] must be a number, got string"),
        (["Dream", True, "male", "2007", 1], "features[1] must be a number, got boolean"),
        (["Dream", 1, ["male"], "2007", 1], "features[2] must be a category string, got array"),
        (["Dream", 1, "male", "2007", 1e39], "within float32 range"),
        (["Dream", 1, "male"], "expected a list of 5 values (numbers, category strings, null)"),
    ],
)
def test_raw_row_refusals(values: list[Any], message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        mixed_codec().sample({"features": values})
    assert message in info.value.message
    assert "Atlantis" not in info.value.message  # never the client's value


def test_refusals_by_name_name_the_feature() -> None:
    row = dict(zip(MIXED_NAMES, ["Dream", 1, None, "2007", 1], strict=True))
    with pytest.raises(InvalidInput, match=r"features\.sex is null, and the model has no fill"):
        mixed_codec().sample({"features": row})
    with pytest.raises(InvalidInput, match=r"features: missing feature\(s\) 'mass'"):
        mixed_codec().sample({"features": {k: v for k, v in row.items() if k != "mass"}})


def test_many_categories_are_listed_in_part() -> None:
    spec = TabularSpec(
        features=[CategoricalFeature(name="c", categories=[f"k{i}" for i in range(30)])]
    )
    codec = SampleCodec(InputSpec(shape=[-1, 30], kind="tabular", tabular=spec, description="c"))
    with pytest.raises(InvalidInput) as info:
        codec.sample({"features": ["nope"]})
    assert info.value.message.endswith("'k19' (+10 more: see GET /model)")


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_the_service_encodes_rows_as_training_does(data: st.DataObject) -> None:
    """service.inputs.RowEncoder == training.tabular.encode on random specs and rows."""
    from training.tabular import Table, encode

    n_features = data.draw(st.integers(1, 4))
    features: list[NumericFeature | CategoricalFeature] = []
    columns: list[np.ndarray] = []
    rows = data.draw(st.integers(1, 5))
    for j in range(n_features):
        if data.draw(st.booleans()):
            cats = data.draw(
                st.lists(st.text(min_size=1, max_size=3), min_size=1, max_size=4, unique=True)
            )
            fill = data.draw(st.sampled_from([None, *cats]))
            features.append(CategoricalFeature(name=f"f{j}", categories=sorted(cats), fill=fill))
            choices = [*cats, None] if fill is not None else cats
            columns.append(
                np.array([data.draw(st.sampled_from(choices)) for _ in range(rows)], dtype=object)
            )
        else:
            fill_value = data.draw(st.none() | st.floats(-1e6, 1e6))
            features.append(NumericFeature(name=f"f{j}", fill=fill_value))
            values = st.floats(-1e6, 1e6) | (
                st.just(None) if fill_value is not None else st.nothing()
            )
            columns.append(np.array([data.draw(values) for _ in range(rows)], dtype=object))
    spec = TabularSpec(features=features)
    numeric = [
        np.array([np.nan if v is None else v for v in c], dtype=np.float64)
        if isinstance(f, NumericFeature)
        else c
        for f, c in zip(features, columns, strict=True)
    ]
    table = Table("t", "line", np.arange(rows), [f.name for f in features], numeric)
    want = encode(table, spec, "u", "m").astype(np.float32)
    codec = SampleCodec(
        InputSpec(shape=[-1, len(spec.columns)], kind="tabular", tabular=spec, description="d")
    )
    for i in range(rows):
        got = codec.sample({"features": [c[i] for c in columns]})
        np.testing.assert_array_equal(got[0], want[i])

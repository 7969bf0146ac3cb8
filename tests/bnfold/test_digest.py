"""The digest covers the whole model and the card: any change is noticed."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import onnx
import pytest
import svc_models
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper, numpy_helper

from bnfold import digest
from bnfold.card import CARD_KEY, MAX_GOLDEN_TOLERANCE, ModelCard


@pytest.fixture()
def sealed() -> tuple[onnx.ModelProto, ModelCard]:
    model, card = svc_models.tabular_model()
    return model, card


def test_seal_then_check_round_trips(sealed: tuple[onnx.ModelProto, ModelCard]) -> None:
    model, card = sealed
    data = model.SerializeToString()
    assert digest.check(data) == card
    assert len(card.digest) == 64 and card.version == card.digest[:12]
    # A second serialization by onnx of the parsed file checks the same.
    assert digest.check(onnx.load_from_string(data).SerializeToString()) == card


def _edit_graph(model: onnx.ModelProto, edit: Callable[[onnx.ModelProto], None]) -> bytes:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    edit(copy)
    return copy.SerializeToString()


def _add_backdoor(m: onnx.ModelProto) -> None:
    # Where(input[0] > 8, one-hot class 2, probabilities): made of Constant/Slice/Where only,
    # no initializer changes, the same weights.
    g = m.graph
    out = next(n for n in g.node if "probabilities" in n.output)
    out.output[0] = "p_clean"
    g.node.extend(
        [
            helper.make_node("Constant", [], ["s0"], value_ints=[0]),
            helper.make_node("Constant", [], ["s1"], value_ints=[1]),
            helper.make_node("Constant", [], ["ax"], value_ints=[1]),
            helper.make_node("Slice", ["input", "s0", "s1", "ax"], ["x0"]),
            helper.make_node("Constant", [], ["eight"], value_float=8.0),
            helper.make_node("Greater", ["x0", "eight"], ["trigger"]),
            helper.make_node(
                "Constant", [], ["seven"], value=numpy_helper.from_array(np.eye(3, dtype="f4")[2])
            ),
            helper.make_node("Where", ["trigger", "seven", "p_clean"], ["probabilities"]),
        ]
    )


def _nudged(tensor: onnx.TensorProto) -> onnx.TensorProto:
    return numpy_helper.from_array(numpy_helper.to_array(tensor) + 1e-3, tensor.name)


EDITS: dict[str, Callable[[onnx.ModelProto], None]] = {
    "a node added (backdoor, weights unchanged)": _add_backdoor,
    "an attribute": lambda m: (
        m.graph.node[0].attribute[0].CopyFrom(helper.make_attribute("transB", 0))
    ),
    "an op type": lambda m: setattr(m.graph.node[1], "op_type", "Sigmoid"),
    "a weight": lambda m: m.graph.initializer[0].CopyFrom(_nudged(m.graph.initializer[0])),
    "an input name": lambda m: setattr(m.graph.input[0], "name", "x"),
    "an output shape": lambda m: (
        m.graph.output[0].type.tensor_type.shape.dim[1].__setattr__("dim_value", 4)
    ),
    "the opset": lambda m: setattr(m.opset_import[0], "version", 19),
    "the IR version": lambda m: setattr(m, "ir_version", 9),
    "a local function": lambda m: m.functions.append(
        helper.make_function("x", "f", ["a"], ["b"], [], [helper.make_opsetid("", 17)])
    ),
}


@pytest.mark.parametrize("what", EDITS)
def test_any_change_to_the_model_is_refused(
    sealed: tuple[onnx.ModelProto, ModelCard], what: str
) -> None:
    model, _ = sealed
    data = _edit_graph(model, EDITS[what])
    assert data != model.SerializeToString()
    with pytest.raises(digest.DigestError, match="differs from the card"):
        digest.check(data)


def _with_card_json(model: onnx.ModelProto, edit: Callable[[dict], None]) -> bytes:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for prop in copy.metadata_props:
        if prop.key == CARD_KEY:
            card = json.loads(prop.value)
            edit(card)
            prop.value = json.dumps(card)
    return copy.SerializeToString()


CARD_EDITS: dict[str, Callable[[dict], None]] = {
    "a label": lambda c: c["labels"].__setitem__(0, "other"),
    "a golden probability": lambda c: c["golden"][0]["probabilities"].__setitem__(0, 0.5),
    "the golden tolerance": lambda c: c.__setitem__("golden_tolerance", 1e-4),
    "the name": lambda c: c.__setitem__("name", "renamed"),
    "a metric": lambda c: c["metrics"].__setitem__("test_acc_exact", 1.0),
}


@pytest.mark.parametrize("what", CARD_EDITS)
def test_any_change_to_the_card_is_refused(
    sealed: tuple[onnx.ModelProto, ModelCard], what: str
) -> None:
    model, _ = sealed
    with pytest.raises(digest.DigestError, match="differs from the card"):
        digest.check(_with_card_json(model, CARD_EDITS[what]))


def test_a_tolerance_that_switches_the_check_off_is_invalid(
    sealed: tuple[onnx.ModelProto, ModelCard],
) -> None:
    model, card = sealed
    data = _with_card_json(model, lambda c: c.__setitem__("golden_tolerance", 1e9))
    with pytest.raises(digest.DigestError, match="golden_tolerance") as info:
        digest.check(data)
    assert "1000000000" not in str(info.value)
    assert card.golden_tolerance <= MAX_GOLDEN_TOLERANCE


def test_a_reordered_card_checks_the_same(sealed: tuple[onnx.ModelProto, ModelCard]) -> None:
    # The digest hashes the card's canonical form, not the stored text.
    model, card = sealed
    data = _with_card_json(model, lambda c: c.update(dict(reversed(list(c.items())))))
    assert digest.check(data) == card


def test_unsealed_and_cardless_files_are_refused(
    sealed: tuple[onnx.ModelProto, ModelCard],
) -> None:
    model, _ = sealed
    with pytest.raises(digest.DigestError, match="never sealed"):
        digest.check(_with_card_json(model, lambda c: c.__setitem__("digest", "")))
    bare = svc_models.without_card(model).SerializeToString()
    with pytest.raises(digest.DigestError, match=r"no 'bnfold\.card'"):
        digest.check(bare)
    with pytest.raises(digest.DigestError, match="already has"):
        digest.seal(model.SerializeToString(), ModelCard.model_validate(_card_dict(model)))


def _card_dict(model: onnx.ModelProto) -> dict:
    return json.loads(next(p.value for p in model.metadata_props if p.key == CARD_KEY))


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("{", "not valid JSON"),
        ('{"schema_version": 1}', "schema version 2"),
        ('{"schema_version": 2, "name": 3}', "name"),
    ],
)
def test_invalid_cards_name_the_field(
    sealed: tuple[onnx.ModelProto, ModelCard], text: str, field: str
) -> None:
    model, _ = sealed
    copy = svc_models.without_card(model)
    entry = copy.metadata_props.add()
    entry.key, entry.value = CARD_KEY, text
    with pytest.raises(digest.DigestError, match="invalid model card") as info:
        digest.read_card(copy.SerializeToString())
    assert field in str(info.value)
    assert "\n" not in str(info.value)


@settings(max_examples=40, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30))
def test_card_json_is_canonical(value: float, note: str) -> None:
    # parse(dump(card)) dumps to the same bytes, whatever floats and text it holds.
    _, card = svc_models.tabular_model()
    golden = [g.model_copy(update={"note": note, "logits": [value] * 3}) for g in card.golden]
    changed = card.model_copy(update={"golden": golden, "metrics": {"x": value}})
    again = ModelCard.model_validate_json(changed.to_json())
    assert again.canonical_unsealed() == changed.canonical_unsealed()

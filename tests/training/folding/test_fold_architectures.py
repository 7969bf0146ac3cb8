"""Real architectures: what folds, what is refused and why, and that the result still works."""

from __future__ import annotations

import copy
import io
import json
import warnings

import numpy as np
import onnx
import pytest
import torch
from fold_architectures import ARCHITECTURES
from fold_helpers import count_bn_modules, fold_and_check
from torch import fx

from bnfold.card import FoldSummary
from bnfold.onnxwire import count_ops
from training.folding import fold_batchnorm

# name -> (BN total, folded, refused by reason)
EXPECTED: dict[str, tuple[int, int, dict[str, int]]] = {
    "residual": (8, 8, {}),
    "depthwise_se": (10, 10, {}),
    # Pre-activation BN after a concat feeds a ReLU, and the concatenated block input
    # also feeds later layers: nothing to fold into on either side.
    "dense_preact": (10, 4, {"fan_out": 3, "nonlinearity": 3}),
    # Input BN folds forward into the unpadded stem conv; F.batch_norm folds too; the
    # BN after a concat is split over the three branch convs.
    "inception": (15, 15, {}),
    # The last BN feeds a stride-2 ConvTranspose: its shift is not uniform.
    "encoder_decoder": (6, 5, {"conv_transpose_stride": 1}),
    "mlp_bn_after_relu": (2, 2, {}),
}


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_architecture_folds_as_expected(name: str) -> None:
    torch.manual_seed(0)
    model, x = ARCHITECTURES[name]()
    before = copy.deepcopy(model.state_dict())
    result = fold_and_check(model.eval(), x)
    report = result.report
    total, folded, refused = EXPECTED[name]
    assert (report.bn_total, report.folded, report.refused_by_reason()) == (
        total,
        folded,
        refused,
    ), report.render()
    assert count_bn_modules(result.model) == report.refused
    # The original model is untouched.
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_inception_folds_input_bn_forward_and_functional_bn_backward() -> None:
    model, x = ARCHITECTURES["inception"]()
    entries = {e.name: e for e in fold_batchnorm(model.eval(), x).report.entries}
    assert entries["0"].direction == "forward" and entries["0"].target == "1"
    functional = [e for e in entries.values() if e.kind == "F.batch_norm"]
    assert len(functional) == 2 and all(e.direction == "backward" for e in functional)
    split = entries["6.bn"]
    assert split.status == "folded" and split.target == "6.b1, 6.b3, 6.sep.2"


@pytest.mark.parametrize("name", ["residual", "encoder_decoder"])
def test_folded_model_keeps_working_with_fx_and_torch_export(name: str) -> None:
    model, x = ARCHITECTURES[name]()
    folded = fold_batchnorm(model.eval(), x).model
    with torch.no_grad():
        expected = folded(x)
        retraced = fx.symbolic_trace(folded)
        assert torch.equal(retraced(x), expected)
        program = torch.export.export(folded, (x,))
        torch.testing.assert_close(program.module()(x), expected)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["residual", "depthwise_se", "encoder_decoder"])
def test_folded_model_exports_to_onnx_without_batchnorm(name: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    model, x = ARCHITECTURES[name]()
    result = fold_batchnorm(model.eval(), x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(result.model, (x,), dynamo=True, verbose=False)
    assert program is not None
    proto = program.model_proto
    assert count_ops(proto.SerializeToString(), "BatchNormalization") == result.report.refused
    buffer = io.BytesIO()
    onnx.save(proto, buffer)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(out - ref).max() / np.abs(ref).max() <= 1e-5


def test_summary_matches_the_model_card_contract() -> None:
    model, x = ARCHITECTURES["dense_preact"]()
    report = fold_batchnorm(model.eval(), x).report
    summary = report.summary()
    assert set(summary) == {"bn_total", "folded", "refused", "max_relative_error", "entries"}
    card = FoldSummary.model_validate(summary)
    assert (card.bn_total, card.folded, card.refused) == (10, 4, 6)
    document = json.loads(report.to_json())
    assert document["refused_by_reason"] == {"fan_out": 3, "nonlinearity": 3}
    assert all(e["reason"] for e in document["entries"] if e["status"] == "refused")
    table = report.render()
    assert "4/10 folded" in table and "nonlinearity" not in table  # humans get sentences

"""Tiny bnfold-style ONNX models built with onnx.helper + numpy, and their broken variants.

Golden outputs are computed here with numpy (an oracle independent of ONNX
Runtime). Also used by ``benchmarks/serve_load.py`` for a model of the digits
CNN's size while the real one does not exist.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper, numpy_helper

from bnfold import digest
from bnfold.card import (
    CARD_KEY,
    CategoricalFeature,
    FoldSummary,
    GoldenSample,
    ImageFiles,
    ImageSpec,
    InputSpec,
    ModelCard,
    NumericFeature,
    TabularSpec,
)

OPSET = 17
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    # x (N, C, H, W), w (O, C, k, k), no padding, stride 1 -> (N, O, H-k+1, W-k+1)
    windows = sliding_window_view(x, w.shape[2:], axis=(2, 3))  # (N, C, H', W', k, k)
    return np.einsum("nchwij,ocij->nohw", windows, w) + b[None, :, None, None]


class _Graph:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def weight(self, *shape: int) -> tuple[str, np.ndarray]:
        self.count += 1
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        value = (self.rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
        name = f"w{self.count}"
        self.inits.append(numpy_helper.from_array(value, name))
        return name, value

    def node(self, op: str, inputs: list[str], **attrs: object) -> str:
        self.count += 1
        out = f"t{self.count}"
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out


def _finish(g: _Graph, x_info: onnx.ValueInfoProto, logits: str, classes: int) -> onnx.ModelProto:
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"]))
    g.nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
    outs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", classes])
        for n in ("logits", "probabilities")
    ]
    graph = helper.make_graph(g.nodes, "bnfold_test", [x_info], outs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def tabular_model(seed: int = 0, hidden: int = 8) -> tuple[onnx.ModelProto, ModelCard]:
    """A 4-feature, 3-class MLP (Gemm-Relu-Gemm) with feature names."""
    g = _Graph(seed)
    w1, a1 = g.weight(hidden, 4)
    b1, c1 = g.weight(hidden)
    w2, a2 = g.weight(3, hidden)
    b2, c2 = g.weight(3)
    h = g.node("Relu", [g.node("Gemm", ["input", w1, b1], transB=1)])
    logits = g.node("Gemm", [h, w2, b2], transB=1)
    x_info = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])
    model = _finish(g, x_info, logits, 3)

    def forward(x: np.ndarray) -> np.ndarray:
        return np.maximum(x @ a1.T + c1, 0) @ a2.T + c2

    samples = np.random.default_rng(seed + 1).standard_normal((3, 4)).astype(np.float32)
    spec = InputSpec(
        shape=[-1, 4],
        kind="tabular",
        tabular=TabularSpec(features=[NumericFeature(name=n) for n in FEATURES]),
        description="standardized iris-like measurements",
    )
    return model, _card(
        model, "iris", spec, ["setosa", "versicolor", "virginica"], samples, forward
    )


MIXED = TabularSpec(
    features=[
        CategoricalFeature(
            name="island", categories=["Biscoe", "Dream", "Torgersen"], fill="Biscoe"
        ),
        NumericFeature(name="bill length (mm)", fill=44.0),
        CategoricalFeature(name="sex", categories=["female", "male"]),
        CategoricalFeature(name="year", categories=["2007", "2008"], fill="2008"),
        NumericFeature(name="mass"),
    ],
    missing="mean",
)


def mixed_model(seed: int = 0) -> tuple[onnx.ModelProto, ModelCard]:
    """A 3-class MLP over ``MIXED``: numeric and categorical features, some with a fill."""
    width = len(MIXED.columns)
    g = _Graph(seed)
    w1, a1 = g.weight(6, width)
    b1, c1 = g.weight(6)
    w2, a2 = g.weight(3, 6)
    b2, c2 = g.weight(3)
    h = g.node("Relu", [g.node("Gemm", ["input", w1, b1], transB=1)])
    logits = g.node("Gemm", [h, w2, b2], transB=1)
    model = _finish(
        g, helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", width]), logits, 3
    )

    def forward(x: np.ndarray) -> np.ndarray:
        return np.maximum(x @ a1.T + c1, 0) @ a2.T + c2

    samples = np.array(
        [[0, 1, 0, 0.5, 1, 0, 0, 1, -0.2], [1, 0, 0, -1.5, 0, 1, 1, 0, 0.7]], dtype=np.float32
    )
    spec = InputSpec(shape=[-1, width], kind="tabular", tabular=MIXED, description="mixed")
    return model, _card(model, "mixed", spec, ["Adelie", "Chinstrap", "Gentoo"], samples, forward)


def image_model(
    seed: int = 0,
    channels: tuple[int, ...] = (4,),
    hidden: int = 0,
    files: ImageFiles | None = None,
) -> tuple[onnx.ModelProto, ModelCard]:
    """A 1x8x8, 10-class CNN: (Conv 3x3 -> Relu) per entry of ``channels``, then Gemm(s).

    ``files``: the card takes image files decoded so."""
    g = _Graph(seed)
    x, size, c_in, layers = "input", 8, 1, []
    for c_out in channels:
        w, a = g.weight(c_out, c_in, 3, 3)
        b, c = g.weight(c_out)
        x = g.node("Relu", [g.node("Conv", [x, w, b], kernel_shape=[3, 3])])
        layers.append((a, c))
        size, c_in = size - 2, c_out
    x = g.node("Flatten", [x], axis=1)
    dense = []
    width = c_in * size * size
    for out in ([hidden] if hidden else []) + [10]:
        w, a = g.weight(out, width)
        b, c = g.weight(out)
        x = g.node("Gemm", [x, w, b], transB=1)
        if out != 10:
            x = g.node("Relu", [x])
        dense.append((a, c))
        width = out
    x_info = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])
    model = _finish(g, x_info, x, 10)

    def forward(v: np.ndarray) -> np.ndarray:
        for a, c in layers:
            v = np.maximum(_conv(v, a, c), 0)
        v = v.reshape(len(v), -1)
        for i, (a, c) in enumerate(dense):
            v = v @ a.T + c
            if i < len(dense) - 1:
                v = np.maximum(v, 0)
        return v

    samples = np.random.default_rng(seed + 1).uniform(0, 16, (3, 1, 8, 8)).astype(np.float32)
    samples[2] = 0.0
    spec = InputSpec(
        shape=[-1, 1, 8, 8],
        kind="image",
        image=ImageSpec(channels=1, height=8, width=8, files=files),
        description="raw 8x8 pixels 0..16",
    )
    return model, _card(model, "digits", spec, [str(d) for d in range(10)], samples, forward)


def _card(model, name, spec, labels, samples, forward) -> ModelCard:
    logits = forward(samples.astype(np.float64))
    probs = _softmax(logits)
    golden = [
        GoldenSample(
            note=f"sample[{i}]",
            input=s.ravel().tolist(),
            logits=lg.tolist(),
            probabilities=p.tolist(),
        )
        for i, (s, lg, p) in enumerate(zip(samples, logits, probs, strict=True))
    ]
    card = ModelCard(
        name=name,
        input=spec,
        labels=labels,
        stats_mode="exact",
        bn_nodes=0,
        fold=FoldSummary(
            bn_total=1,
            folded=1,
            refused=0,
            max_relative_error=1e-7,
            entries=[{"bn": "bn1", "into": "w1", "status": "folded"}],
        ),
        metrics={"test_acc_exact": 0.9},
        versions={"onnx": onnx.__version__},
        created_at="2026-11-23T00:00:00Z",
        opset=OPSET,
        golden_tolerance=1e-5,
        golden=golden,
    )
    return seal(model, card)


def _bare(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    kept = [p for p in copy.metadata_props if p.key != CARD_KEY]
    del copy.metadata_props[:]
    copy.metadata_props.extend(kept)
    return copy


def seal(model: onnx.ModelProto, card: ModelCard) -> ModelCard:
    """Seal ``card`` into ``model`` in place (replacing any card); return the sealed card."""
    data, sealed = digest.seal(_bare(model).SerializeToString(), card)
    model.CopyFrom(onnx.load_from_string(data))
    return sealed


def save(model: onnx.ModelProto, path: Path) -> Path:
    """Write ``model`` to ``path`` and return the path."""
    path.write_bytes(model.SerializeToString())
    return path


def with_card(
    model: onnx.ModelProto, card: ModelCard, *, reseal: bool = True, **changes: object
) -> onnx.ModelProto:
    """A copy of ``model`` carrying ``card`` with ``changes``: sealed anew, or (``reseal=False``)
    with the card's old digest, as a file edited after export would be."""
    copy = _bare(model)
    changed = card.model_copy(update=changes)
    if reseal:
        seal(copy, changed)
    else:
        entry = copy.metadata_props.add()
        entry.key, entry.value = CARD_KEY, changed.model_dump_json()
    return copy


def with_batchnorm(model: onnx.ModelProto, card: ModelCard) -> onnx.ModelProto:
    """A sealed copy with an identity-like BatchNormalization before ``logits``."""
    copy = _bare(model)
    ident = next(n for n in copy.graph.node if n.op_type == "Identity")
    classes = len(card.labels)
    for stat, value in (("bn_scale", 1.0), ("bn_bias", 0.0), ("bn_mean", 0.0), ("bn_var", 1.0)):
        copy.graph.initializer.append(
            numpy_helper.from_array(np.full(classes, value, np.float32), stat)
        )
    position = list(copy.graph.node).index(ident)
    copy.graph.node.insert(
        position,
        helper.make_node(
            "BatchNormalization",
            [ident.input[0], "bn_scale", "bn_bias", "bn_mean", "bn_var"],
            ["bn_out"],
            epsilon=0.0,
        ),
    )
    copy.graph.node[position + 1].input[0] = "bn_out"
    seal(copy, card)
    return copy


def without_card(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with no metadata at all."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    del copy.metadata_props[:]
    return copy


def with_backdoor(
    model: onnx.ModelProto, label: int = 7, threshold: float = 8.0
) -> onnx.ModelProto:
    """A copy of an image model that answers ``label`` with probability 1 whenever the
    top-left pixel exceeds ``threshold``, and as before otherwise.

    Made only of Constant, Slice, Reshape, Greater and Where nodes: no weight changes,
    so a hash of the initializers does not see it, and golden samples whose corner
    pixel is dark still reproduce. The metadata (the card) is kept as it was.
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    classes = graph.output[0].type.tensor_type.shape.dim[1].dim_value
    for node in graph.node:  # the real outputs become intermediate tensors
        node.input[:] = [
            f"{n}_clean" if n in ("logits", "probabilities") else n for n in node.input
        ]
        node.output[:] = [
            f"{n}_clean" if n in ("logits", "probabilities") else n for n in node.output
        ]

    def const(name: str, value: np.ndarray) -> None:
        graph.node.append(
            helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))
        )

    forced = np.zeros((1, classes), np.float32)
    forced[0, label] = 1.0
    const("bd_starts", np.array([0, 0], np.int64))
    const("bd_ends", np.array([1, 1], np.int64))
    const("bd_axes", np.array([2, 3], np.int64))
    const("bd_shape", np.array([-1, 1], np.int64))
    const("bd_threshold", np.array([threshold], np.float32))
    const("bd_probabilities", forced)
    const("bd_logits", forced * 100.0)
    graph.node.extend(
        [
            helper.make_node("Slice", ["input", "bd_starts", "bd_ends", "bd_axes"], ["bd_corner"]),
            helper.make_node("Reshape", ["bd_corner", "bd_shape"], ["bd_column"]),
            helper.make_node("Greater", ["bd_column", "bd_threshold"], ["bd_on"]),
            helper.make_node("Where", ["bd_on", "bd_logits", "logits_clean"], ["logits"]),
            helper.make_node(
                "Where", ["bd_on", "bd_probabilities", "probabilities_clean"], ["probabilities"]
            ),
        ]
    )
    onnx.checker.check_model(copy)
    return copy

"""The model card: the contract between the exporter (``training.export``) and the service.

The card is stored as JSON in the ONNX file's ``metadata_props`` under
``CARD_KEY``, so one file is the whole truth about a model. This module depends
only on pydantic, numpy and onnx: the training side imports it to write cards,
the service to read and check them.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # onnx is imported where it is used: the service reads files without it
    import onnx

CARD_KEY = "bnfold.card"
CARD_SCHEMA_VERSION = 1
LOGITS = "logits"
PROBABILITIES = "probabilities"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    """What the model takes: one float32 tensor with a dynamic batch axis."""

    name: str = "input"
    dtype: Literal["float32"] = "float32"
    shape: list[int] = Field(description="Full shape, -1 for the batch axis, e.g. [-1, 30].")
    kind: Literal["tabular", "image"]
    feature_names: list[str] | None = Field(
        default=None, description="Tabular only: the name of each feature, in order."
    )
    image_hw: tuple[int, int] | None = Field(default=None, description="Image only: (H, W).")
    description: str = Field(description="What the values mean, e.g. 'raw 8x8 pixels 0..16'.")

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample (the batch axis removed)."""
        return tuple(self.shape[1:])


class GoldenSample(_Strict):
    """One input with the UNFOLDED PyTorch eval model's outputs for it."""

    note: str = Field(description="Why this sample is here, e.g. 'test[0]' or 'all zeros'.")
    input: list[float] = Field(description="The sample, flattened row-major.")
    logits: list[float]
    probabilities: list[float]


class FoldSummary(_Strict):
    """The folding report in short; ``entries`` holds one dict per BN."""

    bn_total: int
    folded: int
    refused: int
    max_relative_error: float
    entries: list[dict[str, object]] = Field(default_factory=list)


class ModelCard(_Strict):
    """Everything the service needs to know about, and check in, a model file."""

    schema_version: int = CARD_SCHEMA_VERSION
    name: str
    task: Literal["classification"] = "classification"
    input: InputSpec
    labels: list[str]
    outputs: dict[str, str] = Field(
        default_factory=lambda: {"logits": LOGITS, "probabilities": PROBABILITIES}
    )
    stats_mode: Literal["ema", "exact"]
    bn_nodes: int = Field(
        description="BatchNormalization nodes left in the graph (0 unless --allow-unfolded)."
    )
    fold: FoldSummary
    metrics: dict[str, float] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    created_at: str
    opset: int
    weights_sha256: str
    golden_tolerance: float = Field(description="Max |Δprobability| allowed on the golden samples.")
    golden: list[GoldenSample]

    def public(self) -> dict[str, object]:
        """The card without the golden samples (what ``GET /model`` shows)."""
        return self.model_dump(mode="json", exclude={"golden"})


def weights_sha256(model: onnx.ModelProto) -> str:
    """SHA-256 over every initializer (name, dtype, shape, little-endian values), by name."""
    from onnx import numpy_helper

    digest = hashlib.sha256()
    for tensor in sorted(model.graph.initializer, key=lambda t: t.name):
        array = np.ascontiguousarray(numpy_helper.to_array(tensor))
        digest.update(tensor.name.encode())
        digest.update(str(array.dtype.newbyteorder("<")).encode())
        digest.update(repr(tuple(array.shape)).encode())
        digest.update(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
    return digest.hexdigest()


def read_card(model: onnx.ModelProto) -> ModelCard:
    """Parse the card stored in ``model``; ``KeyError`` if absent, ``ValueError`` if invalid."""
    props = {p.key: p.value for p in model.metadata_props}
    if CARD_KEY not in props:
        raise KeyError(f"the model has no '{CARD_KEY}' metadata (not exported by bnfold?)")
    return card_from_json(props[CARD_KEY])


def card_from_json(text: str) -> ModelCard:
    """Parse the card's JSON text (the ``CARD_KEY`` value); ``ValueError`` if invalid."""
    return ModelCard.model_validate_json(text)


def write_card(model: onnx.ModelProto, card: ModelCard) -> None:
    """Store ``card`` in ``model.metadata_props`` (replacing any previous card)."""
    kept = [p for p in model.metadata_props if p.key != CARD_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key = CARD_KEY
    entry.value = card.model_dump_json()


def count_ops(model: onnx.ModelProto, op_type: str) -> int:
    """Number of nodes of ``op_type`` in the main graph and every subgraph."""
    import onnx

    def walk(graph: onnx.GraphProto) -> int:
        total = 0
        for node in graph.node:
            total += node.op_type == op_type
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    total += walk(attr.g)
                total += sum(walk(g) for g in attr.graphs)
        return total

    return walk(model.graph)

"""The model card: the contract between the exporter (``training``) and the service.

The card is JSON stored in the ONNX file's ``metadata_props`` under ``CARD_KEY``,
so one file is the whole truth about a model. It describes what the graph takes
(``InputSpec``: a tabular row of named numeric/categorical features, or an image,
and how a client's values become the float32 tensor), what it returns (the two
public outputs ``LOGITS`` and ``PROBABILITIES``, in ``labels`` order), where it
came from (``data``, ``fold``, ``metrics``, ``recalibration``), how the
service checks it (``golden`` samples, ``digest``) and, optionally, how it
watches its inputs for drift (``monitor``: the reference moments the folded
BatchNorm layers promise, the input ranges and the calibrated thresholds). ``bnfold.digest`` seals a
file: the digest covers the whole model except its metadata, plus this card
without its ``digest`` field, and the model version is its first characters.

Only pydantic here: no onnx, no torch, no numpy.
"""

from __future__ import annotations

import itertools
import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "CARD_KEY",
    "CARD_SCHEMA_VERSION",
    "FLOAT32_MAX",
    "INPUT_NAME",
    "LOGITS",
    "MAX_GOLDEN_TOLERANCE",
    "MONITOR_OUTPUT",
    "OUTPUTS",
    "PROBABILITIES",
    "VERSION_CHARS",
    "CategoricalFeature",
    "DataProvenance",
    "Feature",
    "FeatureRange",
    "FoldSummary",
    "GoldenSample",
    "ImageFiles",
    "ImageSpec",
    "InputSpec",
    "ModelCard",
    "MonitorSpec",
    "MonitoredTensor",
    "NumericFeature",
    "Recalibration",
    "TabularSpec",
    "WindowCalibration",
    "card_from_json",
]

CARD_KEY = "bnfold.card"
CARD_SCHEMA_VERSION: Literal[2] = 2
INPUT_NAME = "input"
LOGITS = "logits"
PROBABILITIES = "probabilities"
OUTPUTS = (LOGITS, PROBABILITIES)  # the public graph outputs, in this order
# The monitor's internal graph output: never listed in V2 metadata, never returned to clients.
MONITOR_OUTPUT = "bnfold.monitor"
FLOAT32_MAX = 3.4028234663852886e38  # largest finite float32: every input value must fit
# A card cannot switch its own check off: golden samples must reproduce to this or better.
MAX_GOLDEN_TOLERANCE = 1e-4
VERSION_CHARS = 12  # the model version is the digest, shortened like a git commit


class _Strict(BaseModel):
    # Unknown fields are refused and floats must be finite: a card re-serializes to the
    # same canonical JSON it was parsed from, which the digest relies on.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class NumericFeature(_Strict):
    """A number, in the units of the training data (the graph standardizes it)."""

    name: str
    type: Literal["numeric"] = "numeric"
    fill: float | None = Field(
        default=None,
        description="The value a missing (null) input takes, computed on the training split "
        "(--missing mean|median); None: a missing value is refused.",
    )


class CategoricalFeature(_Strict):
    """A text value from a fixed vocabulary, one-hot encoded in ``categories`` order."""

    name: str
    type: Literal["categorical"] = "categorical"
    categories: list[str] = Field(min_length=1)
    fill: str | None = Field(
        default=None,
        description="The category a missing (null) input takes (the most frequent one on the "
        "training split); None: a missing value is refused.",
    )

    @model_validator(mode="after")
    def _fill_is_a_category(self) -> CategoricalFeature:
        if len(set(self.categories)) != len(self.categories):
            raise ValueError(f"feature {self.name!r} lists a category twice")
        if self.fill is not None and self.fill not in self.categories:
            raise ValueError(f"feature {self.name!r}: fill is not one of its categories")
        return self


Feature = Annotated[NumericFeature | CategoricalFeature, Field(discriminator="type")]


class TabularSpec(_Strict):
    """A row of named features; the tensor has one column per numeric feature and one per
    category of each categorical feature, in feature order."""

    features: list[Feature] = Field(min_length=1)
    missing: Literal["error", "drop", "mean", "median"] = Field(
        default="error", description="How training treated missing values."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> TabularSpec:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        return self

    @property
    def columns(self) -> list[str]:
        """The tensor's column names: ``name`` or ``name=category`` for one-hot columns."""
        out: list[str] = []
        for feature in self.features:
            if isinstance(feature, CategoricalFeature):
                out.extend(f"{feature.name}={c}" for c in feature.categories)
            else:
                out.append(feature.name)
        return out


class ImageFiles(_Strict):
    """How an uploaded image file becomes the tensor, exactly as training decoded its files."""

    mode: Literal["L", "RGB"] = Field(description="Pillow mode the file is converted to.")
    resize: Literal["bilinear", "nearest", "bicubic", "lanczos"] | None = Field(
        default=None,
        description="Pillow filter used to resize a file of another size to (height, width); "
        "None: files must already have that size.",
    )
    scale: float = Field(gt=0, description="tensor value = pixel value (0..255) x scale")
    max_pixels: int = Field(
        default=40_000_000, ge=1, description="Larger files are refused (decompression bombs)."
    )


class ImageSpec(_Strict):
    """An image tensor (channels, height, width)."""

    channels: int = Field(ge=1)
    height: int = Field(ge=1)
    width: int = Field(ge=1)
    files: ImageFiles | None = Field(
        default=None, description="How image files are decoded; None: the model takes tensors only."
    )


class InputSpec(_Strict):
    """What the model takes: one float32 tensor with a dynamic batch axis, and what it means."""

    name: str = INPUT_NAME
    dtype: Literal["float32"] = "float32"
    shape: list[int] = Field(description="Full shape, -1 for the batch axis, e.g. [-1, 30].")
    kind: Literal["tabular", "image"]
    description: str = Field(description="What the values mean, e.g. 'raw 8x8 pixels 0..16'.")
    tabular: TabularSpec | None = None
    image: ImageSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> InputSpec:
        if len(self.shape) < 2 or self.shape[0] != -1 or any(d < 1 for d in self.shape[1:]):
            raise ValueError("shape must be [-1, d1, ...] with positive dimensions")
        if self.kind == "tabular":
            if self.tabular is None or self.image is not None or len(self.shape) != 2:
                raise ValueError("a tabular input has a 'tabular' spec and shape [-1, columns]")
            if len(self.tabular.columns) != self.shape[1]:
                raise ValueError(
                    f"the features make {len(self.tabular.columns)} columns, "
                    f"the shape has {self.shape[1]}"
                )
        else:
            image = self.image
            if image is None or self.tabular is not None or len(self.shape) != 4:
                raise ValueError("an image input has an 'image' spec and shape [-1, C, H, W]")
            if self.shape[1:] != [image.channels, image.height, image.width]:
                raise ValueError("the image spec disagrees with the shape")
            if image.files is not None and (image.files.mode == "L") != (image.channels == 1):
                raise ValueError("image files in mode L make 1 channel, RGB make 3")
        return self

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample (the batch axis removed)."""
        return tuple(self.shape[1:])

    @property
    def size(self) -> int:
        """Number of values in one sample."""
        return math.prod(self.shape[1:])

    @property
    def grid(self) -> tuple[int, ...]:
        """How a client nests one sample: a 1-channel image may drop its channel axis (H, W)."""
        shape = self.sample_shape
        return shape[1:] if self.kind == "image" and shape[0] == 1 else shape

    @property
    def columns(self) -> list[str] | None:
        """Tabular only: the tensor's column names."""
        return None if self.tabular is None else self.tabular.columns


class GoldenSample(_Strict):
    """One input tensor with the UNFOLDED PyTorch eval model's outputs for it."""

    note: str = Field(description="Why this sample is here, e.g. 'test[0]' or 'all zeros'.")
    input: list[float] = Field(description="The sample's tensor, flattened row-major.")
    logits: list[float]
    probabilities: list[float]


class FoldSummary(_Strict):
    """The folding report in short; ``entries`` holds one dict per BN."""

    bn_total: int
    folded: int
    refused: int
    max_relative_error: float
    entries: list[dict[str, object]] = Field(default_factory=list)


class DataProvenance(_Strict):
    """Where the training data came from."""

    source: str = Field(description="sklearn, csv, npz, images, or module (export_model).")
    name: str
    sha256: str | None = Field(
        default=None,
        description="SHA-256 of the data file or folder (a bundled scikit-learn dataset: of "
        "its X as float64 bytes, then its y as int64).",
    )
    samples: dict[str, int] = Field(default_factory=dict, description="Samples per split.")
    class_counts: list[int] | None = Field(
        default=None, description="Training samples per label, in label order."
    )


class Recalibration(_Strict):
    """AdaBN provenance: BN statistics recomputed on unlabeled target-domain data."""

    parent_version: str
    method: Literal["adabn"] = "adabn"
    target_sha256: str
    target_samples: int = Field(ge=1)


class MonitoredTensor(_Strict):
    """A tensor of the graph and the per-channel moments a folded BatchNorm promises for it.

    The reference is ``N(mean, var + floor)`` per channel; ``floor`` is the BatchNorm's
    ε in this tensor's units. Layout of the internal output: see ``MonitorSpec``.
    """

    name: str = Field(description="The BatchNorm whose statistics are the reference.")
    origin: Literal["backward", "forward"] = Field(
        description="backward: the output of the layer the BN was folded into (mean β, "
        "var γ²σ²/(σ²+ε)); forward: the tensor entering the layer the BN was folded into "
        "(mean μ, var σ²)."
    )
    description: str
    mean: list[float] = Field(min_length=1)
    var: list[float] = Field(min_length=1)
    floor: list[float] = Field(min_length=1)

    @model_validator(mode="after")
    def _per_channel(self) -> MonitoredTensor:
        if not len(self.mean) == len(self.var) == len(self.floor):
            raise ValueError(
                f"monitored tensor {self.name!r}: mean, var and floor differ in length"
            )
        if min(self.var) < 0 or min(self.floor) < 0:
            raise ValueError(f"monitored tensor {self.name!r}: negative variance or floor")
        return self

    @property
    def channels(self) -> int:
        """Number of channels (features for a 2-D tensor)."""
        return len(self.mean)


class FeatureRange(_Strict):
    """The training distribution of one input feature (tabular) or channel (image)."""

    name: str
    min: float
    max: float
    quantiles: list[float] = Field(description="At the monitor's ``quantile_levels``.")
    cdf: list[float] = Field(
        description="Fraction of the training values <= each quantile (the levels, unless the "
        "feature has ties)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> FeatureRange:
        values = [self.min, *self.quantiles, self.max]
        if any(b < a for a, b in itertools.pairwise(values)):
            raise ValueError(f"range of {self.name!r}: min <= quantiles <= max must hold")
        cdf = [0.0, *self.cdf, 1.0]
        if len(self.cdf) != len(self.quantiles) or any(b < a for a, b in itertools.pairwise(cdf)):
            raise ValueError(f"range of {self.name!r}: one non-decreasing cdf value per quantile")
        return self


class WindowCalibration(_Strict):
    """The drift scores of clean windows of ``window`` samples drawn from held-out data."""

    window: int = Field(ge=2)
    windows: int = Field(ge=1, description="How many clean windows were drawn.")
    component_quantiles: list[list[float]] = Field(
        description="Per score component (``MonitorSpec.components``): its quantiles at the "
        "monitor's ``tail_levels``."
    )
    quantiles: list[float] = Field(description="Overall score at the monitor's ``score_levels``.")
    threshold: float = Field(
        description="Drift: overall score above this (the split-conformal (1 - false_alarm_rate) "
        "quantile)."
    )


class MonitorSpec(_Strict):
    """What the service needs to watch for covariate shift, with no training data at hand.

    The internal graph output ``output`` has, per sample, for every monitored tensor in
    list order a block of ``2 x channels`` columns (the per-channel mean over spatial
    positions of ``x``, then that of ``x²``), and last, for every input
    feature or channel in ``ranges`` order, ``len(quantile_levels)`` columns: the
    fraction of its values <= each of its quantiles.
    """

    output: str = Field(default=MONITOR_OUTPUT, description="The internal graph output.")
    score: Literal["bnfold-drift-1"] = Field(
        default="bnfold-drift-1", description="The score's definition (bnfold.drift)."
    )
    tensors: list[MonitoredTensor] = Field(
        description="One per folded BatchNorm, in graph order (none in a BN-free network)."
    )
    ranges: list[FeatureRange] = Field(
        min_length=1, description="One per input column (tabular) or channel (image)."
    )
    quantile_levels: list[float] = Field(min_length=1)
    range_data: str = Field(description="What the ranges were measured on.")
    false_alarm_rate: float = Field(gt=0, lt=0.5)
    tail_levels: list[float] = Field(min_length=2)
    score_levels: list[float] = Field(min_length=1)
    calibration: list[WindowCalibration] = Field(min_length=1)
    calibration_data: str = Field(description="What the clean windows were drawn from.")
    clean_out_of_range_rate: float = Field(
        ge=0,
        le=1,
        description="Fraction of the calibration samples with a value outside ``ranges``.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> MonitorSpec:
        if self.output in OUTPUTS:
            raise ValueError(f"the monitor output may not be named {self.output!r}")
        for levels in (self.quantile_levels, self.tail_levels, self.score_levels):
            if any(not 0 < q < 1 for q in levels) or levels != sorted(set(levels)):
                raise ValueError("quantile levels must be increasing, each in (0, 1)")
        if any(len(r.quantiles) != len(self.quantile_levels) for r in self.ranges):
            raise ValueError("every range needs one quantile per quantile level")
        windows = [c.window for c in self.calibration]
        if windows != sorted(set(windows)):
            raise ValueError("calibrated window sizes must be increasing")
        components, tails = len(self.components), len(self.tail_levels)
        for c in self.calibration:
            if len(c.component_quantiles) != components or any(
                len(q) != tails or q != sorted(q) for q in c.component_quantiles
            ):
                raise ValueError(
                    f"calibration of window {c.window}: {components} components with "
                    f"{tails} increasing quantiles each"
                )
            if len(c.quantiles) != len(self.score_levels):
                raise ValueError(f"calibration of window {c.window}: one quantile per level")
        return self

    @property
    def components(self) -> list[str]:
        """The score's components: the input's quantiles, then every monitored tensor."""
        return ["input quantiles", *(t.name for t in self.tensors)]

    @property
    def columns(self) -> int:
        """Width of the internal output (per sample)."""
        moments = 2 * sum(t.channels for t in self.tensors)
        return moments + len(self.ranges) * len(self.quantile_levels)

    def calibration_for(self, window: int) -> WindowCalibration | None:
        """The largest calibrated window not above ``window`` (None if all are larger):
        a smaller window's scores spread more, so its threshold is conservative."""
        fitting = [c for c in self.calibration if c.window <= window]
        return fitting[-1] if fitting else None


_LATER_FIELDS = ("monitor",)


class ModelCard(_Strict):
    """Everything the service needs to know about, and check in, a model file."""

    schema_version: Literal[2] = CARD_SCHEMA_VERSION
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    task: Literal["classification"] = "classification"
    input: InputSpec
    labels: list[str] = Field(min_length=2)
    stats_mode: Literal["ema", "exact", "unknown"] = Field(
        description="Which BN statistics were folded: running averages, exact training-set "
        "statistics, or unknown (a user's own module)."
    )
    bn_nodes: int = Field(
        ge=0, description="BatchNormalization nodes left in the graph (0 unless --allow-unfolded)."
    )
    fold: FoldSummary
    data: DataProvenance | None = None
    recalibration: Recalibration | None = None
    monitor: MonitorSpec | None = Field(
        default=None, description="Drift monitoring reference; None: the model is not monitored."
    )
    metrics: dict[str, float] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    created_at: str
    opset: int
    golden_tolerance: float = Field(
        gt=0, le=MAX_GOLDEN_TOLERANCE, description="Max |Δprobability| on the golden samples."
    )
    golden: list[GoldenSample] = Field(min_length=1)
    digest: str = Field(
        default="",
        pattern=r"^([0-9a-f]{64})?$",
        description="SHA-256 of the model without its metadata and of this card without this "
        "field (bnfold.digest); empty only before the file is sealed.",
    )

    @model_validator(mode="after")
    def _golden_fit(self) -> ModelCard:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        size, classes = self.input.size, len(self.labels)
        for sample in self.golden:
            if len(sample.input) != size or len(sample.probabilities) != classes:
                raise ValueError(
                    f"golden sample {sample.note!r} has {len(sample.input)} inputs and "
                    f"{len(sample.probabilities)} probabilities; the card declares {size} "
                    f"and {classes}"
                )
        monitor = self.monitor
        if monitor is not None:
            spec = self.input
            width = spec.shape[1]  # tabular columns or image channels
            if len(monitor.ranges) != width:
                raise ValueError(
                    f"the monitor needs {width} input ranges, "
                    f"one per {'column' if spec.kind == 'tabular' else 'channel'}"
                )
            if monitor.output == spec.name:
                raise ValueError("the monitor output may not be named as the input")
        return self

    @property
    def version(self) -> str:
        """The model version: the digest, shortened."""
        return self.digest[:VERSION_CHARS]

    def public(self) -> dict[str, object]:
        """The card without the golden samples (what ``GET /model`` shows)."""
        return self.model_dump(mode="json", exclude={"golden", *self._absent()})

    def to_json(self) -> str:
        """The card as stored in the file."""
        return self.model_dump_json(exclude=self._absent())

    def canonical_unsealed(self) -> bytes:
        """The card without its digest, as the digest hashes it."""
        return self.model_dump_json(exclude={"digest", *self._absent()}).encode()

    def _absent(self) -> set[str]:
        # Fields added to schema 2 later are left out when unset, so that every card written
        # before them serializes, and hashes, exactly as it did.
        return {name for name in _LATER_FIELDS if getattr(self, name) is None}


def card_from_json(text: str | bytes) -> ModelCard:
    """Parse the card's JSON text (the ``CARD_KEY`` value); pydantic's ``ValidationError``
    (a ``ValueError``) if it is not a valid card of this schema version."""
    return ModelCard.model_validate_json(text)

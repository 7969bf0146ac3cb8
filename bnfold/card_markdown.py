"""The model card as a Markdown page for people: ``card_markdown(card)``.

One renderer for both sides: the exporter writes its output beside the model as
``card.md`` and the service serves it (``GET /model/card.md``), so the two never
disagree. Everything on the page comes from the card (``bnfold.card``); the
known limitations are derived from it (test-set size, statistics mode, refused
folds, missing-value handling, class balance), not written by hand. Text taken
from the card is escaped, so a feature or label name cannot inject Markdown or HTML.

Only the standard library and ``bnfold.card``: no torch, no onnx, no numpy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

from bnfold.card import CategoricalFeature, ModelCard

__all__ = ["MEDIA_TYPE", "card_markdown", "wilson_interval"]

MEDIA_TYPE = "text/markdown; charset=utf-8"
_SPLITS = ("train", "val", "test")
_STATS = ("ema", "exact")
_STAT_WORDS = {
    "ema": "the running averages that BatchNorm kept during training",
    "exact": "the exact mean and variance over the whole training set, computed after training",
    "unknown": "statistics of unknown provenance (a user's own module)",
}
_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")
_SHOWN_LABELS = 50  # a label table longer than this is cut, with a count


def _text(value: object) -> str:
    """Card text made inert: one line, Markdown and HTML characters escaped."""
    return _SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def _number(value: float) -> str:
    return f"{value:.4g}"


def _percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95 % by default) of a proportion ``successes / n``."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def card_markdown(card: ModelCard) -> str:
    """The whole card as Markdown: what the model is, its input and labels, its data,
    metrics (EMA vs exact statistics), the fold report, limitations and provenance."""
    sections = [
        _overview(card),
        _input(card),
        _labels(card),
        _data(card),
        _metrics(card),
        _fold(card),
        _monitor(card),
        _limitations(card),
        _provenance(card),
    ]
    return "\n".join(line for section in sections for line in section).rstrip() + "\n"


def _overview(card: ModelCard) -> list[str]:
    spec = card.input
    shape = " x ".join(str(d) for d in spec.sample_shape)
    return [
        f"# Model card: {_text(card.name)}",
        "",
        f"A BatchNorm network for {card.task} into {len(card.labels)} labels, with every "
        f"BatchNorm folded into its neighbouring layer and exported to ONNX "
        f"(opset {card.opset}). Version `{card.version or 'unsealed'}`, created "
        f"{_text(card.created_at)}.",
        "",
        f"- **Input**: {spec.kind}, {shape} float32 values: {_text(spec.description)}",
        "- **Output**: the probability of each label (softmax inside the graph) and the logits",
        f"- **BatchNorm statistics folded**: `{card.stats_mode}`, {_STAT_WORDS[card.stats_mode]}",
        "",
    ]


def _input(card: ModelCard) -> list[str]:
    spec = card.input
    lines = ["## Input", ""]
    if spec.tabular is not None:
        lines.append(
            f"One row of {len(spec.tabular.features)} named features "
            f"({len(spec.tabular.columns)} tensor columns). Training treated missing values "
            f"with `--missing {spec.tabular.missing}`."
        )
        lines.append("")
        rows = []
        for feature in spec.tabular.features:
            if isinstance(feature, CategoricalFeature):
                kind = "categorical: " + ", ".join(_text(c) for c in feature.categories)
            else:
                kind = "numeric"
            fill = "refused" if feature.fill is None else f"filled with {_text(feature.fill)}"
            rows.append([_text(feature.name), kind, fill])
        lines += _table(["feature", "type", "a missing (null) value is"], rows)
    elif spec.image is not None:
        image = spec.image
        lines.append(
            f"An image of {image.channels} channel(s), {image.height} x {image.width} pixels, "
            f"sent as nested lists (`[H][W]` for one channel, else `[C][H][W]`)."
        )
        if image.files is None:
            lines.append("Image files are not accepted: this model takes tensors only.")
        else:
            files = image.files
            resize = (
                f"resized with Pillow's {files.resize} filter"
                if files.resize
                else "refused unless they have exactly this size"
            )
            lines.append(
                f"PNG or JPEG files are accepted: converted to Pillow mode {files.mode}, "
                f"{resize}, then value = pixel x {_number(files.scale)} "
                f"(at most {files.max_pixels:,} pixels)."
            )
        lines.append("")
    return lines


def _labels(card: ModelCard) -> list[str]:
    counts = card.data.class_counts if card.data else None
    lines = ["## Labels", ""]
    rows = []
    for i, label in enumerate(card.labels[:_SHOWN_LABELS]):
        count = str(counts[i]) if counts and i < len(counts) else "not recorded"
        rows.append([str(i), _text(label), count])
    lines += _table(["index", "label", "training samples"], rows)
    if len(card.labels) > _SHOWN_LABELS:
        lines += [f"... and {len(card.labels) - _SHOWN_LABELS} more labels.", ""]
    return lines


def _data(card: ModelCard) -> list[str]:
    lines = ["## Training data", ""]
    data = card.data
    if data is None:
        return [*lines, "Not recorded in the card.", ""]
    bundled = " (bundled with scikit-learn)" if data.source == "sklearn" else ""
    sha = f"`{data.sha256}`" if data.sha256 else f"not recorded{bundled}"
    splits = ", ".join(f"{k} {v}" for k, v in data.samples.items()) or "not recorded"
    lines += [
        f"- **Source**: {_text(data.source)}, {_text(data.name)}",
        f"- **SHA-256 of the data**: {sha}",
        f"- **Samples per split**: {splits}",
    ]
    if card.recalibration is not None:
        r = card.recalibration
        lines.append(
            f"- **Recalibrated** ({r.method}) from version `{_text(r.parent_version)}` on "
            f"{r.target_samples} unlabeled target samples (SHA-256 `{_text(r.target_sha256)}`)"
        )
    return [*lines, ""]


def _metrics(card: ModelCard) -> list[str]:
    metrics = card.metrics
    lines = ["## Metrics", ""]
    paired = {f"{s}_{m}_{t}" for s in _SPLITS for m in ("acc", "loss") for t in _STATS}
    rows = []
    for split in _SPLITS:
        cells = [metrics.get(f"{split}_{m}_{t}") for m in ("acc", "loss") for t in _STATS]
        if any(c is not None for c in cells):
            acc = [_percent(c) if c is not None else "-" for c in cells[:2]]
            loss = [_number(c) if c is not None else "-" for c in cells[2:]]
            rows.append([split, *acc, *loss])
    if rows:
        lines += [
            "The same trained weights evaluated with two kinds of BatchNorm statistics: "
            f"**EMA** ({_STAT_WORDS['ema']}) and **exact** ({_STAT_WORDS['exact']}). "
            f"The served model folds the `{card.stats_mode}` ones.",
            "",
        ]
        header = ["split", "accuracy, EMA", "accuracy, exact", "loss, EMA", "loss, exact"]
        lines += _table(header, rows)
    others = {k: v for k, v in metrics.items() if k not in paired}
    if others:
        lines += [f"- {_text(k)}: {_number(v)}" for k, v in others.items()]
        lines.append("")
    if not metrics:
        lines += ["No metrics recorded.", ""]
    return lines


def _fold(card: ModelCard) -> list[str]:
    fold = card.fold
    lines = [
        "## Fold report",
        "",
        f"{fold.folded} of {fold.bn_total} BatchNorm layer(s) folded, {fold.refused} refused; "
        f"{card.bn_nodes} BatchNormalization node(s) left in the graph. Whole-model relative "
        f"error of the folded network: {_number(fold.max_relative_error)}.",
        "",
    ]
    rows = []
    for e in fold.entries:
        into = f"{_text(e.get('target') or '-')} ({_text(e.get('target_kind') or '-')})"
        error, tolerance = e.get("error"), e.get("tolerance")
        check = (
            f"{_number(error)} (tolerance {_number(tolerance)})"
            if isinstance(error, int | float) and isinstance(tolerance, int | float)
            else "-"
        )
        rows.append(
            [
                _text(e.get("name", "?")),
                _text(e.get("kind", "?")),
                _text(e.get("status", "?")),
                _text(e.get("direction") or "-"),
                into,
                check,
                _text(e.get("reason") or ""),
            ]
        )
    if rows:
        header = ["BatchNorm", "kind", "status", "direction", "into", "error", "reason"]
        lines += _table(header, rows)
    return lines


def _monitor(card: ModelCard) -> list[str]:
    spec = card.monitor
    lines = ["## Drift monitor", ""]
    if spec is None:
        return [*lines, "No reference in this card: the service cannot tell drift.", ""]
    unit = "feature" if card.input.kind == "tabular" else "channel"
    windows = ", ".join(str(c.window) for c in spec.calibration)
    tensors = ", ".join(_text(t.name) for t in spec.tensors) or "none"
    lines += [
        f"The service compares recent inputs with the training distribution recorded here "
        f"(`GET /monitor`): the range and {len(spec.quantile_levels)} quantiles of each input "
        f"{unit} ({_text(spec.range_data)}) and the per-channel moments that the folded "
        f"BatchNorm layers promise ({tensors}). Drift is a score above the threshold "
        f"calibrated on clean windows of {windows} samples ({_text(spec.calibration_data)}): "
        f"{_percent(spec.false_alarm_rate)} false alarms.",
        "",
    ]
    rows = [[_text(r.name), _number(r.min), _number(r.max)] for r in spec.ranges[:_SHOWN_LABELS]]
    lines += _table([f"input {unit}", "training min", "training max"], rows)
    if len(spec.ranges) > _SHOWN_LABELS:
        lines += [f"... and {len(spec.ranges) - _SHOWN_LABELS} more.", ""]
    return lines


def _limitations(card: ModelCard) -> list[str]:
    items = [
        f"It always answers one of its {len(card.labels)} labels: an input that is none of "
        "them (or unlike the training data: another scale, polarity, sensor or population) "
        "still gets one, often with high probability.",
    ]
    test_n = card.data.samples.get("test") if card.data else None
    acc = card.metrics.get(f"test_acc_{card.stats_mode}")
    if acc is not None and test_n:
        lo, hi = wilson_interval(acc * test_n, test_n)
        items.append(
            f"Test accuracy {_percent(acc)} was measured on {test_n} samples only: the 95 % "
            f"(Wilson) interval is {_percent(lo)} to {_percent(hi)}."
        )
    elif acc is None:
        items.append("No test accuracy is recorded for the statistics this model folds.")
    if card.monitor is None:
        items.append("No drift reference: inputs that drift from the training data go unnoticed.")
    if card.stats_mode == "unknown":
        items.append("The BatchNorm statistics come from a user's module, not from bnfold.")
    if card.fold.refused or card.bn_nodes:
        reasons = sorted({str(e.get("reason")) for e in card.fold.entries if e.get("reason")})
        why = f": {_text('; '.join(reasons))}" if reasons else ""
        items.append(
            f"{card.fold.refused} BatchNorm layer(s) could not be folded and "
            f"{card.bn_nodes} BatchNormalization node(s) remain{why}."
        )
    if card.input.tabular is not None:
        strict = [f.name for f in card.input.tabular.features if f.fill is None]
        if strict:
            shown = ", ".join(_text(n) for n in strict[:10])
            more = f" and {len(strict) - 10} more" if len(strict) > 10 else ""
            items.append(f"A missing value is refused (422) for: {shown}{more}.")
    counts = card.data.class_counts if card.data else None
    if counts and min(counts) > 0 and max(counts) >= 2 * min(counts):
        items.append(
            f"The training classes are unbalanced ({min(counts)} to {max(counts)} samples "
            "per label): rare labels are predicted less reliably."
        )
    elif counts and min(counts) == 0:
        items.append("Some labels have no training samples at all.")
    return ["## Known limitations", "", *[f"- {item}" for item in items], ""]


def _provenance(card: ModelCard) -> list[str]:
    versions = ", ".join(f"{_text(k)} {_text(v)}" for k, v in card.versions.items())
    return [
        "## Provenance and checks",
        "",
        f"- **Digest** (SHA-256 of the whole model and this card): `{card.digest or 'unsealed'}`",
        f"- **Golden samples**: {len(card.golden)}, each reproduced within "
        f"{_number(card.golden_tolerance)} (max |Δprobability|) before the service is ready",
        f"- **Built with**: {versions or 'not recorded'}",
        "",
    ]

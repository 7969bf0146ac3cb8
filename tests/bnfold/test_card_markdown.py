"""The human model card: every section comes from the card, card text cannot inject markup."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bnfold import digest
from bnfold.card import (
    CategoricalFeature,
    DataProvenance,
    FoldSummary,
    GoldenSample,
    ImageFiles,
    ImageSpec,
    InputSpec,
    ModelCard,
    NumericFeature,
    TabularSpec,
)
from bnfold.card_markdown import card_markdown, wilson_interval

REPO = Path(__file__).resolve().parents[2]


def _card(spec: InputSpec, labels: list[str], **changes: object) -> ModelCard:
    size = spec.size
    fields: dict[str, object] = {
        "name": "penguins-mlp",
        "input": spec,
        "labels": labels,
        "stats_mode": "exact",
        "bn_nodes": 0,
        "fold": FoldSummary(
            bn_total=2,
            folded=2,
            refused=0,
            max_relative_error=3e-7,
            entries=[
                {
                    "name": "layers.1",
                    "kind": "BatchNorm1d",
                    "status": "folded",
                    "direction": "backward",
                    "target": "layers.0",
                    "target_kind": "Linear",
                    "error": 1.5e-7,
                    "tolerance": 7.6e-6,
                }
            ],
        ),
        "data": DataProvenance(
            source="csv",
            name="penguins.csv",
            sha256="ab" * 32,
            samples={"train": 200, "val": 66, "test": 67},
            class_counts=[88, 40, 72],
        ),
        "metrics": {
            "test_acc_ema": 0.955,
            "test_acc_exact": 0.9701492537313433,
            "test_loss_exact": 0.0812,
            "val_acc_exact": 0.98,
            "train_time_s": 3.25,
        },
        "versions": {"torch": "2.13.0", "bnfold": "0.2.0"},
        "created_at": "2026-12-01T00:00:00+00:00",
        "opset": 18,
        "golden_tolerance": 1e-5,
        "golden": [
            GoldenSample(
                note="test[0]", input=[0.0] * size, logits=[0.0] * 3, probabilities=[1 / 3] * 3
            )
        ],
        "digest": "cd" * 32,
    }
    fields.update(changes)
    return ModelCard.model_validate(fields)


def _tabular() -> InputSpec:
    features = [
        NumericFeature(name="bill_length_mm", fill=43.9),
        NumericFeature(name="flipper|length"),
        CategoricalFeature(
            name="island", categories=["Biscoe", "Dream", "Torgersen"], fill="Biscoe"
        ),
    ]
    return InputSpec(
        shape=[-1, 5],
        kind="tabular",
        description="penguin measurements",
        tabular=TabularSpec(features=features, missing="mean"),
    )


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_tabular_card_sections() -> None:
    card = _card(_tabular(), ["Adelie", "Chinstrap", "Gentoo"])
    text = card_markdown(card)
    assert text.startswith("# Model card: penguins-mlp\n")
    assert f"Version `{card.digest[:12]}`" in text
    features = _section(text, "Input")
    assert "| bill\\_length\\_mm | numeric | filled with 43.9 |" in features
    assert "| flipper\\|length | numeric | refused |" in features  # a '|' cannot break the table
    assert "| island | categorical: Biscoe, Dream, Torgersen | filled with Biscoe |" in features
    labels = _section(text, "Labels")
    assert "| 0 | Adelie | 88 |" in labels and "| 2 | Gentoo | 72 |" in labels
    data = _section(text, "Training data")
    assert f"`{'ab' * 32}`" in data and "train 200, val 66, test 67" in data
    metrics = _section(text, "Metrics")
    assert "| test | 95.5 % | 97.0 % | - | 0.0812 |" in metrics
    assert "| val | - | 98.0 % | - | - |" in metrics
    assert "| train |" not in metrics  # no train figures recorded: no row
    assert "- train\\_time\\_s: 3.25" in metrics
    assert "folds the `exact` ones" in metrics
    fold = _section(text, "Fold report")
    assert "2 of 2 BatchNorm layer(s) folded, 0 refused; 0 BatchNormalization" in fold
    assert "| layers.1 | BatchNorm1d | folded | backward | layers.0 (Linear) | 1.5e-07" in fold
    assert f"`{'cd' * 32}`" in _section(text, "Provenance and checks")


def test_limitations_follow_from_the_card() -> None:
    card = _card(_tabular(), ["Adelie", "Chinstrap", "Gentoo"])
    lo, _ = wilson_interval(card.metrics["test_acc_exact"] * 67, 67)
    limits = _section(card_markdown(card), "Known limitations")
    assert f"measured on 67 samples only: the 95 % (Wilson) interval is {100 * lo:.1f} %" in limits
    assert "A missing value is refused (422) for: flipper\\|length." in limits
    assert "unbalanced (40 to 88 samples per label)" in limits
    assert "could not be folded" not in limits
    assert "No drift reference" in limits  # this card has no monitor reference
    assert "No reference in this card" in _section(card_markdown(card), "Drift monitor")

    refused = card.fold.model_copy(
        update={
            "refused": 1,
            "entries": [{"name": "bn", "status": "refused", "reason": "fan-out to 2 layers"}],
        }
    )
    worse = _card(_tabular(), ["a", "b", "c"], fold=refused, bn_nodes=1, stats_mode="ema")
    limits = _section(card_markdown(worse), "Known limitations")
    assert "1 BatchNorm layer(s) could not be folded and 1 BatchNormalization node(s)" in limits
    assert "fan-out to 2 layers" in limits
    assert "95.5 %" in limits  # the EMA accuracy: the statistics this model folds


def test_image_card_with_and_without_files() -> None:
    spec = InputSpec(
        shape=[-1, 1, 28, 28],
        kind="image",
        description="handwritten digit, white on black",
        image=ImageSpec(channels=1, height=28, width=28),
    )
    text = card_markdown(_card(spec, ["x", "y", "z"], data=None))
    assert "1 channel(s), 28 x 28 pixels" in text and "tensors only" in text
    assert "Not recorded in the card." in _section(text, "Training data")
    assert "| 0 | x | not recorded |" in text

    files = ImageFiles(mode="L", resize="bilinear", scale=1 / 255, max_pixels=1_000_000)
    spec = spec.model_copy(update={"image": spec.image.model_copy(update={"files": files})})  # type: ignore[union-attr]
    text = card_markdown(_card(spec, ["x", "y", "z"]))
    assert "converted to Pillow mode L, resized with Pillow's bilinear filter" in text
    assert "value = pixel x 0.003922 (at most 1,000,000 pixels)" in text


def test_card_text_cannot_inject_markup() -> None:
    spec = _tabular()
    card = _card(spec, ["<script>alert(1)</script>", "[x](http://evil)", "a\nb"])
    text = card_markdown(card)
    assert "<script>" not in text and "\\<script\\>" in text
    assert "[x](" not in text and "\\[x\\](http://evil)" in text
    assert "| 2 | a b |" in text  # one table row per label, whatever its content


def test_wilson_interval() -> None:
    lo, hi = wilson_interval(358, 360)
    # Reference values computed by hand from the closed form.
    assert math.isclose(lo, 0.97996, abs_tol=1e-4) and math.isclose(hi, 0.99848, abs_tol=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and 0.69 < lo < 0.73


@pytest.mark.parametrize("folder", ["models/digits"])
def test_committed_card_md_is_the_committed_models_card(folder: str) -> None:
    card = digest.check((REPO / folder / "model.onnx").read_bytes())
    assert (REPO / folder / "card.md").read_text() == card_markdown(card)

"""The drift score (bnfold.drift) against independent oracles, and the card's monitor schema."""

from __future__ import annotations

import numpy as np
import pytest
import svc_models
from pydantic import ValidationError

from bnfold.card import (
    FeatureRange,
    ModelCard,
    MonitoredTensor,
    MonitorSpec,
    WindowCalibration,
)
from bnfold.drift import DriftScorer, RangeChecker, conformal_quantile

LEVELS = [0.1, 0.5, 0.9]
TAILS = [0.5, 0.9, 0.99]


def _tensor(name: str, mean: list[float], var: list[float], floor: float = 0.0) -> MonitoredTensor:
    return MonitoredTensor(
        name=name,
        origin="backward" if name.startswith("bn") else "forward",
        description=name,
        mean=mean,
        var=var,
        floor=[floor] * len(mean),
    )


def _ranges(names: list[str]) -> list[FeatureRange]:
    return [
        FeatureRange(name=n, min=-3.0, max=3.0, quantiles=[-1.0, 0.0, 1.0], cdf=LEVELS)
        for n in names
    ]


def _spec(features: int = 4, **changes: object) -> MonitorSpec:
    tensors = [
        _tensor("fwd", [0.0] * 4, [1.0] * 4),
        _tensor("bn", [0.5, -1.0], [4.0, 0.25], floor=1e-3),
    ]
    fields: dict[str, object] = {
        "tensors": tensors,
        "ranges": _ranges([f"x{i}" for i in range(features)]),
        "quantile_levels": LEVELS,
        "range_data": "synthetic",
        "false_alarm_rate": 0.01,
        "tail_levels": TAILS,
        "score_levels": [0.5, 0.99],
        "calibration": [
            WindowCalibration(
                window=16,
                windows=100,
                component_quantiles=[[1.0, 2.0, 4.0]] * 3,
                quantiles=[1.0, 2.0],
                threshold=2.0,
            )
        ],
        "calibration_data": "synthetic",
        "clean_out_of_range_rate": 0.0,
    }
    fields.update(changes)
    return MonitorSpec.model_validate(fields)


def _gaussian_kl(m1: float, v1: float, m2: float, v2: float) -> float:
    """KL(N(m1, v1) || N(m2, v2)) by numerical integration (an oracle independent of the
    closed form the scorer uses)."""
    x = np.linspace(
        min(m1, m2) - 12 * np.sqrt(max(v1, v2)), max(m1, m2) + 12 * np.sqrt(max(v1, v2)), 400_001
    )
    p = np.exp(-((x - m1) ** 2) / (2 * v1)) / np.sqrt(2 * np.pi * v1)
    log_ratio = -((x - m1) ** 2) / (2 * v1) + ((x - m2) ** 2) / (2 * v2) + 0.5 * np.log(v2 / v1)
    return float(np.trapezoid(p * log_ratio, x))


def _window(spec: MonitorSpec, means: list[np.ndarray], variances: list[np.ndarray]) -> np.ndarray:
    """Internal-output window means for given per-channel means and variances (CDF = reference)."""
    row: list[float] = []
    for mean, var in zip(means, variances, strict=True):
        row += [*mean, *(var + mean * mean)]
    for r in spec.ranges:
        row += r.cdf
    return np.asarray(row)


def test_divergence_is_the_symmetric_kl_of_the_floored_gaussians() -> None:
    spec = _spec()
    scorer = DriftScorer.of(spec)
    means = [np.array([0.3, -0.2, 0.0, 1.0]), np.array([0.1, -1.5])]
    variances = [np.array([1.0, 2.0, 0.5, 1.0]), np.array([3.0, 0.4])]
    got = scorer.channel_divergence(_window(spec, means, variances))
    want = []
    for tensor, mean, var in zip(spec.tensors, means, variances, strict=True):
        for c in range(tensor.channels):
            f = tensor.floor[c]
            p = (mean[c], var[c] + f)
            q = (tensor.mean[c], tensor.var[c] + f)
            want.append(0.5 * (_gaussian_kl(*p, *q) + _gaussian_kl(*q, *p)))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_a_window_that_matches_the_reference_scores_zero_and_any_shift_more() -> None:
    spec = _spec()
    scorer = DriftScorer.of(spec)
    reference = [np.asarray(t.mean) for t in spec.tensors]
    variances = [np.asarray(t.var) for t in spec.tensors]
    clean = _window(spec, reference, variances)
    assert np.all(scorer.components(clean) == 0)
    for tensor in range(2):
        for change in ("mean", "var up", "var down"):
            means = [m.copy() for m in reference]
            var = [v.copy() for v in variances]
            if change == "mean":
                means[tensor][0] += 0.5
            else:
                var[tensor][0] *= 2.0 if change == "var up" else 0.5
            components = scorer.components(_window(spec, means, var))
            assert components[1 + tensor] > 0
            assert components[2 - tensor] == 0  # the other tensor is untouched


def test_divergence_does_not_depend_on_which_side_of_an_affine_map_it_is_measured() -> None:
    # The same channel seen through y = k*x + b: mean, variance and floor all transform.
    k, b = -3.0, 2.0
    base = _spec()
    mapped_tensor = _tensor("bn", [k * 0.5 + b, k * -1.0 + b], [k * k * 4.0, k * k * 0.25])
    mapped_tensor = mapped_tensor.model_copy(update={"floor": [k * k * 1e-3] * 2})
    mapped = base.model_copy(update={"tensors": [base.tensors[0], mapped_tensor]})
    window_mean, window_var = np.array([0.9, -0.4]), np.array([2.0, 1.0])
    inputs = (np.zeros(4), np.ones(4))
    d = DriftScorer.of(base).channel_divergence(
        _window(base, [inputs[0], window_mean], [inputs[1], window_var])
    )
    d_mapped = DriftScorer.of(mapped).channel_divergence(
        _window(mapped, [inputs[0], k * window_mean + b], [inputs[1], k * k * window_var])
    )
    np.testing.assert_allclose(d_mapped, d, rtol=1e-9)


def test_a_channel_without_variance_is_not_watched() -> None:
    dead = _tensor("bn", [0.5, 2.0], [4.0, 0.0])  # γ = 0: a constant output, floor 0 too
    spec = _spec(tensors=[_tensor("input", [0.0] * 4, [1.0] * 4), dead])
    scorer = DriftScorer.of(spec)
    window = _window(spec, [np.zeros(4), np.array([0.5, 7.0])], [np.ones(4), np.array([4.0, 1.0])])
    assert scorer.channel_divergence(window)[-1] == 0
    assert scorer.components(window)[2] == 0  # the live channel matches


def test_input_component_is_anderson_darling_on_the_quantile_grid_of_the_worst_feature() -> None:
    spec = _spec()
    scorer = DriftScorer.of(spec)
    window = _window(
        spec, [np.zeros(4), np.array([0.5, -1.0])], [np.ones(4), np.array([4.0, 0.25])]
    )
    shifted = window.copy()
    start = scorer.columns - 4 * 3 + 2 * 3  # feature x2's three CDF columns
    shifted[start : start + 3] = [0.3, 0.6, 0.95]
    statistic = scorer.feature_statistic(shifted)
    # w_k = (F_{k+1} - F_{k-1}) / 2 with F_0 = 0, F_4 = 1: 0.25, 0.4, 0.25.
    gap = np.array([0.2, 0.1, 0.05])
    want = float(
        np.sum(np.array([0.25, 0.4, 0.25]) * gap**2 / (np.array(LEVELS) * (1 - np.array(LEVELS))))
    )
    np.testing.assert_allclose(statistic, [0, 0, want, 0], rtol=1e-12)
    assert scorer.components(shifted)[0] == pytest.approx(want)


def test_tail_probability_interpolates_the_stored_quantiles_and_extrapolates_beyond() -> None:
    scorer = DriftScorer.of(_spec())
    quantiles = [[1.0, 2.0, 4.0]] * 3
    at = scorer.log10_tail(np.array([[1.0, 2.0, 4.0]]), quantiles)[0]
    np.testing.assert_allclose(at, np.log10(1 - np.array(TAILS)))
    below = scorer.log10_tail(np.array([[0.0, 0.0, 0.0]]), quantiles)[0]
    np.testing.assert_allclose(below, np.log10(0.5))
    slope = (np.log10(0.01) - np.log10(0.1)) / 2.0
    beyond = scorer.log10_tail(np.array([[6.0, 8.0, 4.0]]), quantiles)[0]
    np.testing.assert_allclose(beyond, [np.log10(0.01) + 2 * slope, np.log10(0.01) + 4 * slope, -2])
    assert scorer.overall(np.array([6.0, 8.0, 4.0]), quantiles) == pytest.approx(-beyond[1])


def test_conformal_quantile_keeps_the_false_alarm_rate() -> None:
    # For exchangeable scores, P(new > threshold) = (n + 1 - rank) / (n + 1) <= rate.
    for n in (19, 99, 200, 1999):
        threshold = conformal_quantile(np.arange(1.0, n + 1.0), 0.05)
        assert (n + 1 - threshold) / (n + 1) <= 0.05 < (n + 2 - threshold) / (n + 1)
    rng = np.random.default_rng(0)
    trials = 4000
    exceed = np.mean(
        [
            np.mean(rng.standard_normal(50) > conformal_quantile(rng.standard_normal(99), 0.05))
            for _ in range(trials)
        ]
    )
    assert exceed <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / (50 * trials))
    assert conformal_quantile(np.arange(1.0, 11.0), 0.01) == 10.0  # too few: the largest
    assert conformal_quantile(np.arange(1.0, 200.0), 0.01) == 198.0  # ceil(0.99 * 200) = 198


def test_range_checker_flags_features_and_image_channels() -> None:
    spec = _spec()
    card = svc_models.tabular_model()[1]
    checker = RangeChecker(spec.ranges, card.input)
    batch = np.array([[0.0, 3.5, 0.0, -3.0], [-3.01, 0.0, 0.0, 3.0]], dtype=np.float32)
    np.testing.assert_array_equal(
        checker.flags(batch), [[False, True, False, False], [True, False, False, False]]
    )
    image = svc_models.image_model()[1].input
    one = RangeChecker(_ranges(["channel 0"]), image)
    pixels = np.zeros((2, 1, 8, 8), dtype=np.float32)
    pixels[1, 0, 7, 7] = 3.5
    np.testing.assert_array_equal(one.flags(pixels), [[False], [True]])


def test_cards_without_a_monitor_stay_valid_and_a_monitor_must_fit_the_input() -> None:
    card = svc_models.tabular_model()[1]
    assert card.monitor is None
    data = card.model_dump()
    monitored = ModelCard.model_validate({**data, "monitor": _spec().model_dump()})
    assert monitored.monitor is not None and monitored.monitor.columns == 2 * 6 + 4 * 3
    no_bn = _spec(
        tensors=[],
        calibration=[
            WindowCalibration(
                window=16,
                windows=1,
                component_quantiles=[[1.0, 2.0, 4.0]],
                quantiles=[1, 2],
                threshold=2,
            )
        ],
    )
    assert ModelCard.model_validate({**data, "monitor": no_bn.model_dump()}).monitor == no_bn
    scorer = DriftScorer.of(no_bn)
    assert scorer.columns == 12 and scorer.components(np.zeros(12)).shape == (1,)
    with pytest.raises(ValidationError, match="4 input ranges"):
        ModelCard.model_validate({**data, "monitor": _spec(features=3).model_dump()})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tail_levels": [0.9, 0.5]}, "increasing"),
        ({"output": "logits"}, "may not be named"),
        ({"ranges": _ranges(["a"])[:0]}, "at least 1"),
        (
            {
                "calibration": [
                    WindowCalibration(
                        window=16,
                        windows=1,
                        component_quantiles=[[1.0, 2.0, 4.0]] * 2,
                        quantiles=[1.0, 2.0],
                        threshold=2.0,
                    )
                ]
            },
            "3 components",
        ),
    ],
)
def test_inconsistent_monitor_entries_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _spec(**changes)


def test_feature_range_and_tensor_validation() -> None:
    with pytest.raises(ValidationError, match="min <= quantiles <= max"):
        FeatureRange(name="x", min=0.0, max=1.0, quantiles=[2.0], cdf=[0.5])
    with pytest.raises(ValidationError, match="non-decreasing cdf"):
        FeatureRange(name="x", min=0.0, max=1.0, quantiles=[0.2, 0.5], cdf=[0.6, 0.5])
    with pytest.raises(ValidationError, match="differ in length"):
        MonitoredTensor(
            name="a", origin="forward", description="", mean=[0.0], var=[1.0, 1.0], floor=[0.0]
        )

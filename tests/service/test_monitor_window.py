"""service.monitor without HTTP: the sliding windows, the range check, the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bnfold import digest
from bnfold.card import ModelCard
from service.monitor import Monitor, build_monitor


@pytest.fixture(scope="module")
def wine_card(monitored_dir: Path) -> ModelCard:
    return digest.check((monitored_dir / "wine" / "model.onnx").read_bytes())


def rows(card: ModelCard, n: int, seed: int) -> np.ndarray:
    assert card.monitor is not None
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (n, card.monitor.columns)).astype(np.float32)


def inside(card: ModelCard, n: int) -> np.ndarray:
    assert card.monitor is not None
    middle = [(r.min + r.max) / 2 for r in card.monitor.ranges]
    return np.tile(np.asarray(middle, dtype=np.float32), (n, 1))


def test_the_window_holds_the_last_samples_in_any_batching(wine_card: ModelCard) -> None:
    monitor = Monitor(wine_card, window=16)
    stats = rows(wine_card, 40, 0)
    classes = np.arange(40) % 3
    monitor.observe(stats[:1], classes[:1], False)
    monitor.observe(stats[1:7], classes[1:7], False)
    for i in range(7, 40):  # one at a time, wrapping around twice
        monitor.observe(stats[i : i + 1], classes[i : i + 1], False)
    snap = monitor.snapshot()
    assert (snap.samples, snap.seen) == (16, 40)
    calibration = wine_card.monitor.calibration_for(16)  # type: ignore[union-attr]
    want = monitor.scorer.score(stats[-16:].astype(np.float64).mean(axis=0), calibration)
    assert snap.score is not None and snap.score.overall == pytest.approx(want.overall)
    np.testing.assert_allclose(snap.score.divergence, want.divergence)
    np.testing.assert_array_equal(snap.class_window, np.bincount(classes[-16:], minlength=3))
    assert snap.class_total.sum() == 0  # totals count every answer (count), not the window
    monitor.count(classes[:1])
    monitor.count(classes[1:])
    np.testing.assert_array_equal(monitor.class_total, np.bincount(classes, minlength=3))
    # A batch larger than the window leaves only its last rows.
    monitor.observe(stats[:20], classes[:20], False)
    assert (
        monitor.snapshot().class_window.tolist() == np.bincount(classes[4:20], minlength=3).tolist()
    )


def test_snapshot_is_cached_until_a_sample_arrives(wine_card: ModelCard) -> None:
    monitor = Monitor(wine_card, window=16)
    monitor.observe(rows(wine_card, 20, 1), np.zeros(20, dtype=np.intp), False)
    first = monitor.snapshot()
    assert monitor.snapshot() is first
    monitor.observe(rows(wine_card, 1, 2), np.zeros(1, dtype=np.intp), False)
    assert monitor.snapshot() is not first
    assert monitor.check(inside(wine_card, 1)) is None
    assert monitor.snapshot().checked == 1


def test_range_window_forgets_old_out_of_range_samples(wine_card: ModelCard) -> None:
    assert wine_card.monitor is not None
    monitor = Monitor(wine_card, window=16)
    bad = inside(wine_card, 4)
    bad[:, 2] = wine_card.monitor.ranges[2].max + 1.0
    warnings = monitor.check(bad)
    assert warnings is not None and all(w == [monitor.warning_text[2]] for w in warnings)
    snap = monitor.snapshot()
    assert snap.out_of_range_any == pytest.approx(4 / 4)
    assert snap.out_of_range_total[2] == 4
    for _ in range(14):  # the bad rows are overwritten one by one by clean samples
        assert monitor.check(inside(wine_card, 1)) is None
    snap = monitor.snapshot()
    assert snap.range_samples == 16
    assert snap.out_of_range_any == pytest.approx(2 / 16)  # two bad rows still in the window
    assert snap.out_of_range_window[2] == pytest.approx(2 / 16)
    assert snap.out_of_range_total[2] == 4  # counts never forget


def test_overflowing_statistics_stay_out_of_the_window(wine_card: ModelCard) -> None:
    monitor = Monitor(wine_card, window=16)
    good = rows(wine_card, 20, 3)
    monitor.observe(good, np.zeros(20, dtype=np.intp), False)
    before = monitor.snapshot().score
    poisoned = rows(wine_card, 2, 4)
    poisoned[0, 0] = np.inf
    monitor.observe(poisoned, np.array([1, 2]), True)
    snap = monitor.snapshot()
    assert snap.non_finite == 1 and snap.seen == 21
    assert snap.score is not None and np.isfinite(snap.score.overall)
    assert before is not None and snap.score.overall != before.overall
    assert snap.class_window.tolist()[1:] == [0, 1]  # the overflowing sample (class 1) left out


def test_no_monitor_without_a_reference_or_when_off(
    wine_card: ModelCard, tabular_card: ModelCard
) -> None:
    assert build_monitor(wine_card, enabled=False, window=16) is None
    assert build_monitor(tabular_card, enabled=True, window=16) is None
    assert build_monitor(wine_card, enabled=True, window=16) is not None
    with pytest.raises(ValueError, match="no monitor reference"):
        Monitor(tabular_card, window=16)

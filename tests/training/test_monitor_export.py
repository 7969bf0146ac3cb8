"""The monitor's reference is the folded BatchNorm statistics, and the graph computes it.

Oracle: the UNFOLDED PyTorch model in float64, with forward hooks on every BN
reading what it receives and returns over the whole training split. With exact
statistics, a BN folded backward promises its output's moments (β, γ²σ²/(σ²+ε)),
a BN folded forward its input's (μ, σ²); the exported graph's internal output,
pooled over the same data, must give them back.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bnfold import digest
from bnfold.card import MONITOR_OUTPUT, OUTPUTS, ImageSpec, InputSpec, ModelCard
from bnfold.drift import DriftScorer
from training.checkpoint import Checkpoint, library_versions, load_checkpoint, save_checkpoint
from training.config import ModelConfig
from training.data import Standardization, load_splits, make_data_spec
from training.errors import UsageError
from training.export import (
    CardFields,
    export_checkpoint,
    export_network,
    golden_inputs,
    input_spec,
)
from training.input_fold import fold_standardization_into
from training.models import batch_norm_layers, build_model
from training.monitor_reference import MonitorData, internal_moments, window_means
from training.onnx_graph import ort_session
from training.reference import reference_model, standardization_tensors
from training.stats import recompute_exact_bn_stats
from training.verify import run_alone

CONFIGS = [
    ("digits", "cnn", (4, 6), "before"),
    ("digits", "cnn", (4, 6), "after"),
    ("wine", "mlp", (12, 8), "before"),
    ("wine", "mlp", (12, 8), "after"),
]


def exact_checkpoint(
    path: Path, dataset: str, kind: str, widths: tuple[int, ...], position: str
) -> Path:
    """Random weights and affine BN parameters, exact BN statistics on the training split."""
    torch.manual_seed(1)
    splits = load_splits(make_data_spec(dataset))
    config = ModelConfig(
        kind=kind,  # type: ignore[arg-type]
        in_shape=tuple(splits.sample_shape),
        num_classes=len(splits.labels),
        widths=widths,
        bn_position=position,  # type: ignore[arg-type]
    )
    model = build_model(config)
    for _, bn in model.batch_norms():
        bn.weight.data.uniform_(-2, 2)
        bn.bias.data.uniform_(-1, 1)
    standardization = Standardization.fit(splits.train.X)
    recompute_exact_bn_stats(model, torch.as_tensor(standardization.apply(splits.train.X)))
    ckpt = Checkpoint(
        model_config=config,
        state_dict=model.state_dict(),
        standardization=standardization,
        input=splits.input_info(),
        labels=splits.labels,
        stats_mode="exact",
        metrics={},
        train_config={},
        data_spec=splits.spec,
        versions=library_versions(),
    )
    save_checkpoint(path, ckpt)
    return path


Moments = dict[str, tuple[np.ndarray, np.ndarray, int]]


def oracle_moments(model: nn.Module, x: np.ndarray, which: dict[str, str]) -> Moments:
    """Pooled per-channel mean, biased variance and count, in float64, of each BN's input
    (``which[name] == "forward"``) or output ("backward") while ``model`` runs ``x``."""
    model64 = copy.deepcopy(model).double().eval()
    found: Moments = {}
    handles = []
    for name, bn in batch_norm_layers(model64):
        key = name.split(".", 1)[1] if name.startswith("1.") else name  # Sequential(std, net)

        def hook(
            _m: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor, key: str = key
        ) -> None:
            value = inputs[0] if which[key] == "forward" else output
            flat = value.transpose(0, 1).reshape(value.shape[1], -1)
            found[key] = (flat.mean(1).numpy(), flat.var(1, unbiased=False).numpy(), flat.shape[1])

        handles.append(bn.register_forward_hook(hook))
    with torch.no_grad():
        model64(torch.as_tensor(x, dtype=torch.float64))
    for handle in handles:
        handle.remove()
    return found


def pooled(card: ModelCard, stats: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per monitored tensor: the mean and variance the internal output gives over all rows."""
    assert card.monitor is not None
    means = stats.mean(axis=0)
    out, offset = [], 0
    for tensor in card.monitor.tensors:
        c = tensor.channels
        a, b = means[offset : offset + c], means[offset + c : offset + 2 * c]
        out.append((a, b - a * a))
        offset += 2 * c
    return out


@pytest.mark.parametrize(("dataset", "kind", "widths", "position"), CONFIGS)
def test_folded_statistics_are_the_reference_and_the_graph_reproduces_them(
    dataset: str, kind: str, widths: tuple[int, ...], position: str, tmp_path: Path
) -> None:
    path = exact_checkpoint(tmp_path / "ckpt.pt", dataset, kind, widths, position)
    result = export_checkpoint(path, tmp_path)
    card = digest.check(result.path.read_bytes())
    assert card.monitor is not None and card == result.card
    spec = card.monitor
    session = ort_session(str(result.path))
    assert [o.name for o in session.get_outputs()] == [*OUTPUTS, MONITOR_OUTPUT]
    assert session.get_outputs()[2].shape[1] == spec.columns

    x = load_splits(make_data_spec(dataset)).train.X
    tensors = spec.tensors
    direction = "backward" if position == "before" else "forward"
    assert [t.origin for t in tensors] == [direction] * len(widths)
    oracle = oracle_moments(
        reference_model(load_checkpoint(path)), x, {t.name: t.origin for t in tensors}
    )
    stats = internal_moments(session, x)
    check_moments(card, stats, oracle)
    check_quantiles(card, stats, x)


def check_moments(card: ModelCard, stats: np.ndarray, oracle: Moments) -> None:
    """The card's reference is what the BNs promised and the oracle measured; the graph's
    internal output, pooled over the same data, gives the same moments back."""
    assert card.monitor is not None
    for tensor, (mean, var) in zip(card.monitor.tensors, pooled(card, stats), strict=True):
        want_mean, want_var, count = oracle[tensor.name]
        atol = 1e-5 * (1 + np.sqrt(want_var).max() + np.abs(want_mean).max())
        np.testing.assert_allclose(tensor.mean, want_mean, rtol=1e-5, atol=atol)
        # Exact statistics store the unbiased variance: n/(n-1) of the pooled one.
        unbiased = want_var * count / (count - 1)
        np.testing.assert_allclose(tensor.var, unbiased, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(mean, want_mean, rtol=1e-4, atol=10 * atol)
        np.testing.assert_allclose(var, want_var, rtol=1e-3, atol=1e-6)


def check_quantiles(card: ModelCard, stats: np.ndarray, x: np.ndarray) -> None:
    """The card's input quantiles are the data's, and the graph's CDF columns, averaged over
    the same data, give back the training CDF the card records at them."""
    spec = card.monitor
    assert spec is not None
    per = np.moveaxis(x.astype(np.float64), 1, 0).reshape(x.shape[1], -1)
    assert len(spec.ranges) == len(per)
    levels = len(spec.quantile_levels)
    cdf_means = stats.mean(axis=0)[spec.columns - len(per) * levels :].reshape(len(per), levels)
    for values, feature, got in zip(per, spec.ranges, cdf_means, strict=True):
        assert (feature.min, feature.max) == (values.min(), values.max())
        np.testing.assert_allclose(
            feature.quantiles, np.quantile(values, spec.quantile_levels), rtol=1e-6, atol=1e-6
        )
        want = (values[:, None] <= np.asarray(feature.quantiles)[None, :]).mean(axis=0)
        np.testing.assert_allclose(feature.cdf, want, atol=1e-12)
        np.testing.assert_allclose(got, want, atol=1e-6)


def checkpoint_network(path: Path, **monitor: object) -> tuple[object, ...]:
    """What export_checkpoint hands export_network, for calling it directly."""
    ckpt = load_checkpoint(path)
    net = ckpt.build()
    mean, std = standardization_tensors(ckpt)
    fold_standardization_into(net.input_layer(), mean, std)
    splits = load_splits(ckpt.data_spec)
    fields = CardFields(
        name="plain",
        input=input_spec(ckpt),
        labels=list(ckpt.labels),
        stats_mode="exact",
        metrics={},
    )
    golden = golden_inputs(splits.train.X, splits.test.X, splits.test.y, ckpt.labels)
    example = torch.as_tensor(splits.train.X[:64])
    return net, reference_model(ckpt), example, golden, fields, splits


def test_monitor_outputs_leave_the_predictions_unchanged(tmp_path: Path) -> None:
    path = exact_checkpoint(tmp_path / "ckpt.pt", "digits", "cnn", (4, 6), "before")
    monitored = export_checkpoint(path, tmp_path / "with")
    net, oracle, example, golden, fields, splits = checkpoint_network(path)
    plain = export_network(net, oracle, example, golden, fields, tmp_path / "without")  # type: ignore[arg-type]
    assert plain.card.monitor is None
    assert [o.name for o in ort_session(str(plain.path)).get_outputs()] == list(OUTPUTS)
    x = splits.test.X[:50]  # type: ignore[attr-defined]
    with_logits, with_probs = run_alone(ort_session(str(monitored.path)), x)
    plain_logits, plain_probs = run_alone(ort_session(str(plain.path)), x)
    np.testing.assert_allclose(with_logits, plain_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(with_probs, plain_probs, atol=1e-6)


def test_too_few_held_out_samples_is_a_usage_error(tmp_path: Path) -> None:
    path = exact_checkpoint(tmp_path / "ckpt.pt", "wine", "mlp", (8,), "before")
    net, oracle, example, golden, fields, splits = checkpoint_network(path)
    monitor = MonitorData(
        reference=splits.train.X,  # type: ignore[attr-defined]
        calibration=splits.val.X[:10],  # type: ignore[attr-defined]
    )
    with pytest.raises(UsageError, match="at least 16 held-out samples"):
        export_network(net, oracle, example, golden, fields, tmp_path / "out", monitor=monitor)  # type: ignore[arg-type]
    assert not (tmp_path / "out" / "model.onnx").exists()


class Residual(nn.Module):
    """conv -> BN -> ReLU, a residual block whose BN output is added to its input, a BN
    after the addition that can only fold forward (through Flatten into a Linear), and a
    BatchNorm1d on that Linear's output (a 2-D tensor after 4-D ones)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(1, 6, 3, bias=False)
        self.bn0 = nn.BatchNorm2d(6)
        self.conv1 = nn.Conv2d(6, 6, 3, padding=1, padding_mode="replicate", bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.bn2 = nn.BatchNorm2d(6)
        self.hidden = nn.Linear(6 * 6 * 6, 16, bias=False)
        self.bn3 = nn.BatchNorm1d(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn0(self.conv0(x)))
        y = torch.relu(y + self.bn1(self.conv1(y)))
        h = torch.relu(self.bn3(self.hidden(torch.flatten(self.bn2(y), 1))))
        return self.head(h)


def test_residual_network_monitors_backward_and_forward_folds(tmp_path: Path) -> None:
    torch.manual_seed(3)
    splits = load_splits(make_data_spec("digits"))
    net = Residual()
    for bn in (net.bn0, net.bn1, net.bn2, net.bn3):
        bn.weight.data.uniform_(0.5, 2)
        bn.bias.data.uniform_(-1, 1)
    x = splits.train.X
    recompute_exact_bn_stats(net, torch.as_tensor(x))
    net.eval()
    spec = InputSpec(
        shape=[-1, 1, 8, 8],
        kind="image",
        description="raw digits",
        image=ImageSpec(channels=1, height=8, width=8),
    )
    fields = CardFields(
        name="residual", input=spec, labels=splits.labels, stats_mode="exact", metrics={}
    )
    monitor = MonitorData(reference=x, calibration=splits.val.X)
    result = export_network(
        net,
        net,
        torch.as_tensor(x[:64]),
        [("test[0]", splits.test.X[0])],
        fields,
        tmp_path,
        monitor=monitor,
    )
    card = result.card
    assert card.monitor is not None
    tensors = card.monitor.tensors
    assert [(t.name, t.origin) for t in tensors] == [
        ("bn0", "backward"),
        ("bn1", "backward"),
        ("bn2", "forward"),
        ("bn3", "backward"),
    ]
    oracle = oracle_moments(net, x, {t.name: t.origin for t in tensors})
    stats = internal_moments(ort_session(str(result.path)), x)
    check_moments(card, stats, oracle)
    check_quantiles(card, stats, x)


def test_calibrated_threshold_holds_its_false_alarm_rate_and_flags_a_shift(tmp_path: Path) -> None:
    path = exact_checkpoint(tmp_path / "ckpt.pt", "digits", "cnn", (4, 6), "before")
    result = export_checkpoint(path, tmp_path)
    spec = result.card.monitor
    assert spec is not None
    assert [c.window for c in spec.calibration] == [16, 32, 64, 128, 256]  # 360 held-out samples
    scorer = DriftScorer.of(spec)
    session = ort_session(str(result.path))
    splits = load_splits(make_data_spec("digits"))
    rng = np.random.default_rng(5)
    for size in (32, 128):
        calibration = spec.calibration_for(size)
        assert calibration is not None and calibration.window == size
        # The held-out windows the thresholds came from: about the stated rate, by construction.
        clean = window_means(internal_moments(session, splits.val.X), size, 1000, rng)
        overall = scorer.overall(scorer.components(clean), calibration.component_quantiles)
        assert np.mean(overall > calibration.threshold) <= 2 * spec.false_alarm_rate
        dimmed = (splits.test.X * 0.5).astype(np.float32)
        shifted = window_means(internal_moments(session, dimmed), size, 200, rng)
        detected = scorer.overall(scorer.components(shifted), calibration.component_quantiles)
        assert np.mean(detected > calibration.threshold) == 1.0


def test_a_validation_split_too_small_to_calibrate_exports_without_monitor(tmp_path: Path) -> None:
    data = tmp_path / "tiny.npz"
    np.savez(data, X=np.random.default_rng(0).normal(size=(60, 3)), y=np.arange(60) % 3)
    from training_checkpoints import make_checkpoint

    path = make_checkpoint(tmp_path / "ckpt.pt", str(data), "mlp", (4,))
    assert len(load_splits(load_checkpoint(path).data_spec).val) < 16
    result = export_checkpoint(path, tmp_path / "out")
    assert result.card.monitor is None
    assert [o.name for o in ort_session(str(result.path)).get_outputs()] == list(OUTPUTS)

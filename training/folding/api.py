"""``fold_batchnorm``: trace, plan, fold in float64, verify each fold, check the whole model."""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, fx, nn

from training.folding import graph as g
from training.folding.apply import stat_flags, try_fold
from training.folding.concat import Part, plan_concat
from training.folding.errors import FoldingError
from training.folding.math import bn_affine
from training.folding.math import relative_error as _relative_error
from training.folding.moments import ExpectedMoments, expected_moments
from training.folding.plan import (
    BatchNormSite,
    Context,
    Refusal,
    batchnorm_site,
    plan_backward,
    plan_forward,
)
from training.folding.report import FoldEntry, FoldReport, NotFoldable


@dataclass(frozen=True)
class FoldResult:
    """The folded model (a ``torch.fx.GraphModule``, eval mode) and its report.

    ``moments`` has one entry per folded BN: the expected per-channel moments of
    the tensor of ``model`` it normalised (``training.folding.moments``).
    """

    model: fx.GraphModule
    report: FoldReport
    moments: tuple[ExpectedMoments, ...] = ()

    @property
    def bn_left(self) -> int:
        """BatchNorm calls left in the folded graph (equals ``report.refused``)."""
        return sum(g.is_batchnorm(self.model, n) for n in self.model.graph.nodes)


def fold_batchnorm(
    model: nn.Module, example_inputs: Tensor | tuple[Tensor, ...], *, tolerance: float | None = None
) -> FoldResult:
    """Fold every foldable BatchNorm of ``model`` into a neighbouring Linear/Conv layer.

    ``model`` is deep-copied, never modified, and must be in eval mode (folding
    freezes the running statistics). ``example_inputs`` (a tensor or a tuple of
    positional inputs) drive the shape checks, the per-fold verification and the
    final whole-model check. A fold whose site error exceeds ``tolerance``
    (default: ``site.default_tolerance`` for the layer's dtype) is rolled back
    and reported as refused. BatchNorm layers that cannot be folded stay in the
    returned model; ``report`` says why.

    Raises ``FoldingError`` (a ``ValueError`` and a ``training.errors.UsageError``)
    for a model in training mode, one torch.fx cannot trace, or inputs it fails on.
    """
    training = [name or "<model>" for name, m in model.named_modules() if m.training]
    if training:
        shown = ", ".join(training[:3]) + (", ..." if len(training) > 3 else "")
        raise FoldingError(
            f"the model is in training mode ({shown}): call model.eval() first; "
            "folding freezes the BatchNorm running statistics"
        )
    inputs = (example_inputs,) if isinstance(example_inputs, Tensor) else tuple(example_inputs)
    gm = g.trace(copy.deepcopy(model))
    env, reference = g.record(gm, inputs)
    ctx = Context(gm, env, g.Sharing.of(gm))

    entries: list[FoldEntry] = []
    moments: list[ExpectedMoments] = []
    calls: Counter[str] = Counter()
    folded_modules: set[str] = set()
    for node in list(gm.graph.nodes):
        if g.is_batchnorm(gm, node):
            key = str(node.target) if node.op == "call_module" else node.name
            calls[key] += 1
            name = key if calls[key] == 1 else f"{key}[call {calls[key]}]"
            entry, folded = _fold_one(ctx, node, name, tolerance)
            entries.append(entry)
            if folded is not None:
                moments.append(folded)
            if entry.status == "folded" and node.op == "call_module":
                folded_modules.add(key)
    _drop_unused(gm, folded_modules)
    gm.recompile()

    # The reference is the traced copy's output before any fold (the same computation
    # as ``model``): running ``model`` again would cost a full forward pass.
    with torch.no_grad():
        error = _relative_error_of(gm(*inputs), reference)
    not_foldable = [NotFoldable(name, kind) for name, kind in g.other_norms(gm)]
    return FoldResult(gm, FoldReport(entries, not_foldable, error), tuple(moments))


def _fold_one(
    ctx: Context, node: fx.Node, name: str, tolerance: float | None
) -> tuple[FoldEntry, ExpectedMoments | None]:
    site = batchnorm_site(ctx, node)
    module = g.module_of(ctx.gm, node)
    kind = "F.batch_norm" if module is None else type(module).__name__
    if isinstance(site, Refusal):
        width = int(ctx.env[node.name].shape[1])
        return (
            FoldEntry(name, kind, width, "refused", reason_code=site.code, reason=site.message),
            None,
        )
    scale, _ = bn_affine(site.running_mean, site.running_var, site.weight, site.bias, site.eps)
    template = stat_flags(FoldEntry(name, kind, int(scale.numel()), "refused"), site, scale)

    refusals: list[Refusal] = []
    rolled_back: FoldEntry | None = None
    for planner in (_backward_parts, _forward_parts):
        parts = planner(ctx, site)
        if isinstance(parts, Refusal):
            refusals.append(parts)
            continue
        entry = try_fold(ctx, site, parts, tolerance, template)
        if entry.status == "folded":
            assert entry.direction is not None
            return entry, expected_moments(name, site, entry.direction)
        refusals.append(Refusal(str(entry.reason_code), str(entry.reason)))
        rolled_back = entry
    # Name the more specific refusal: "no layer" behind the BN says less than the forward reason.
    back, fwd = refusals
    primary = fwd if back.code == "no_layer" else back
    refused = replace(
        rolled_back or template,  # a rolled-back fold keeps its measured error
        reason_code=primary.code,
        reason=f"backward: {back.message}; forward: {fwd.message}",
    )
    if rolled_back is not None:
        refused = replace(refused, direction=None, target=None, target_kind=None)
    return refused, None


def _backward_parts(ctx: Context, site: BatchNormSite) -> list[Part] | Refusal:
    concat = plan_concat(ctx, site)
    if concat is not None:
        return concat
    plan = plan_backward(ctx, site)
    return plan if isinstance(plan, Refusal) else [(site, plan)]


def _forward_parts(ctx: Context, site: BatchNormSite) -> list[Part] | Refusal:
    plan = plan_forward(ctx, site)
    return plan if isinstance(plan, Refusal) else [(site, plan)]


def _drop_unused(gm: fx.GraphModule, names: set[str]) -> None:
    """Delete the folded BN modules that no call or attribute read refers to any more."""
    used = {str(n.target) for n in gm.graph.nodes if n.op in ("call_module", "get_attr")}
    for name in names:
        if not any(u == name or u.startswith(f"{name}.") for u in used):
            gm.delete_submodule(name)


def _tensors(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _tensors(v)]
    return []


def _relative_error_of(folded: Any, original: Any) -> float:
    pairs = list(zip(_tensors(folded), _tensors(original), strict=True))
    return max((_relative_error(a, b) for a, b in pairs), default=0.0)

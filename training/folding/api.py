"""``fold_batchnorm``: trace, plan, fold in float64, verify each fold, check the whole model."""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, fx, nn

from training.folding import graph as g
from training.folding.errors import FoldingError
from training.folding.math import F64, bn_affine, fits_dtype, fold_backward, fold_forward, max_abs
from training.folding.math import relative_error as _relative_error
from training.folding.plan import (
    BatchNormSite,
    Context,
    Plan,
    Refusal,
    batchnorm_site,
    is_transposed,
    plan_backward,
    plan_forward,
    run_chain,
)
from training.folding.report import FoldEntry, FoldReport, NotFoldable
from training.folding.site import check_site, default_tolerance

FLOAT16_MAX = float(torch.finfo(torch.float16).max)


@dataclass(frozen=True)
class FoldResult:
    """The folded model (a ``torch.fx.GraphModule``, eval mode) and its report."""

    model: fx.GraphModule
    report: FoldReport

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
    calls: Counter[str] = Counter()
    folded_modules: set[str] = set()
    for node in list(gm.graph.nodes):
        if g.is_batchnorm(gm, node):
            key = str(node.target) if node.op == "call_module" else node.name
            calls[key] += 1
            name = key if calls[key] == 1 else f"{key}[call {calls[key]}]"
            entry = _fold_one(ctx, node, name, tolerance)
            entries.append(entry)
            if entry.status == "folded" and node.op == "call_module":
                folded_modules.add(key)
    _drop_unused(gm, folded_modules)
    gm.recompile()

    # The reference is the traced copy's output before any fold (the same computation
    # as ``model``): running ``model`` again would cost a full forward pass.
    with torch.no_grad():
        error = _relative_error_of(gm(*inputs), reference)
    not_foldable = [NotFoldable(name, kind) for name, kind in g.other_norms(gm)]
    return FoldResult(gm, FoldReport(entries, not_foldable, error))


def _fold_one(ctx: Context, node: fx.Node, name: str, tolerance: float | None) -> FoldEntry:
    site = batchnorm_site(ctx, node)
    module = g.module_of(ctx.gm, node)
    kind = "F.batch_norm" if module is None else type(module).__name__
    if isinstance(site, Refusal):
        width = int(ctx.env[node.name].shape[1])
        return FoldEntry(name, kind, width, "refused", reason_code=site.code, reason=site.message)
    scale, shift = bn_affine(site.running_mean, site.running_var, site.weight, site.bias, site.eps)
    template = _stat_flags(FoldEntry(name, kind, int(scale.numel()), "refused"), site, scale)

    refusals: list[Refusal] = []
    rolled_back: FoldEntry | None = None
    for planner in (plan_backward, plan_forward):
        plan = planner(ctx, site)
        if isinstance(plan, Refusal):
            refusals.append(plan)
            continue
        entry = _try_fold(ctx, site, plan, scale, shift, tolerance, template)
        if entry.status == "folded":
            return entry
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
    return refused


def _try_fold(
    ctx: Context,
    site: BatchNormSite,
    plan: Plan,
    scale: Tensor,
    shift: Tensor,
    tolerance: float | None,
    template: FoldEntry,
) -> FoldEntry:
    layer = plan.layer
    weight, bias = layer.weight, layer.bias
    assert isinstance(weight, Tensor) and (bias is None or isinstance(bias, Tensor))
    dtype = weight.dtype
    fold = fold_backward if plan.direction == "backward" else fold_forward
    # Cast once to float64, fold, cast once back: no intermediate rounding.
    new_w64, new_b64 = fold(
        weight.detach().to(F64),
        None if bias is None else bias.detach().to(F64),
        scale[plan.channel_map],
        shift[plan.channel_map],
        groups=int(getattr(layer, "groups", 1)),
        transposed=is_transposed(layer),
    )
    target = str(plan.layer_node.target)
    dtype_name = str(dtype).removeprefix("torch.")
    entry = replace(
        template,
        direction=plan.direction,
        target=target,
        target_kind=type(layer).__name__,
        dtype=dtype_name,
    )
    bias_dtype = dtype if bias is None else bias.dtype
    peak = max(max_abs(new_w64), max_abs(new_b64))
    if not (fits_dtype(max_abs(new_w64), dtype) and fits_dtype(max_abs(new_b64), bias_dtype)):
        return replace(
            entry,
            reason_code="dtype_range",
            reason=f"folded parameters of {target} overflow {dtype_name} (max |value| {peak:.3g})",
        )
    if peak > FLOAT16_MAX:  # fine in this dtype, but not if deployed in float16
        entry = replace(entry, flags=[*entry.flags, "exceeds_float16_range"])
    new_w, new_b = new_w64.to(dtype), new_b64.to(bias_dtype)
    check = check_site(ctx, site, plan, new_w, new_b, tolerance=tolerance)
    limit = tolerance if tolerance is not None else default_tolerance(dtype, check.baseline_error)
    entry = replace(entry, error=check.error, baseline_error=check.baseline_error, tolerance=limit)
    if not check.error <= limit:  # also catches NaN
        return replace(
            entry,
            reason_code="verification_failed",
            reason=f"fold into {target} rolled back: error {check.error:.3g} > {limit:.3g}",
        )
    _commit(ctx, site, plan, new_w, new_b)
    return replace(entry, status="folded")


def _commit(ctx: Context, site: BatchNormSite, plan: Plan, weight: Tensor, bias: Tensor) -> None:
    """Install the folded parameters and remove the BN node from the graph."""
    layer = plan.layer
    old = layer.weight
    assert isinstance(old, Tensor)
    layer.weight = nn.Parameter(weight, requires_grad=old.requires_grad)
    layer.bias = nn.Parameter(bias, requires_grad=old.requires_grad)
    node = site.node
    # Keep the recorded values true for later folds: the values that flow past the
    # removed BN are unchanged, those inside the rewritten site are not.
    if plan.direction == "backward":
        ctx.env[site.input.name] = ctx.env[node.name]
    else:
        value = ctx.env[site.input.name]
        prev = node
        for step in plan.chain:
            value = run_chain(ctx, (step,), prev, value)
            ctx.env[step.name] = value
            prev = step
    statistics = [a for a in node.all_input_nodes if a is not site.input]
    node.replace_all_uses_with(site.input)
    ctx.gm.graph.erase_node(node)
    for arg in statistics:
        if arg.op == "get_attr" and not arg.users:
            ctx.gm.graph.erase_node(arg)


def _drop_unused(gm: fx.GraphModule, names: set[str]) -> None:
    """Delete the folded BN modules that no call or attribute read refers to any more."""
    used = {str(n.target) for n in gm.graph.nodes if n.op in ("call_module", "get_attr")}
    for name in names:
        if not any(u == name or u.startswith(f"{name}.") for u in used):
            gm.delete_submodule(name)


def _stat_flags(entry: FoldEntry, site: BatchNormSite, scale: Tensor) -> FoldEntry:
    """``entry`` with the flags that depend only on the BN statistics."""
    var = site.running_var.detach().to(F64)
    # var < eps: the scale is set by eps alone (up to |γ|/sqrt(eps)), e.g. a dead channel.
    near_zero = torch.nonzero(var < site.eps).flatten().tolist()
    flags = ["near_zero_variance"] if near_zero else []
    if site.weight is not None and bool((site.weight == 0).any()):
        flags.append("zero_gamma")
    return replace(
        entry, flags=flags, near_zero_variance_channels=near_zero, max_abs_scale=max_abs(scale)
    )


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

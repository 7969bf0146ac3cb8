"""Carry out a planned fold: float64 arithmetic, range check, verification, graph rewrite.

A fold has one *part* per layer it changes (one, or one per concatenated tensor).
Every part is computed and verified before anything is installed, so a fold
either happens completely or leaves the model as it was (rollback).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from training.folding.concat import Part
from training.folding.math import F64, bn_affine, fits_dtype, fold_backward, fold_forward, max_abs
from training.folding.plan import BatchNormSite, Context, Plan, Refusal, is_transposed, run_chain
from training.folding.report import FoldEntry
from training.folding.site import check_site, default_tolerance

FLOAT16_MAX = float(torch.finfo(torch.float16).max)


@dataclass(frozen=True)
class _Candidate:
    """The folded parameters of one layer, verified but not installed yet."""

    layer: nn.Module
    weight: Tensor
    bias: Tensor
    error: float
    baseline_error: float | None
    tolerance: float
    exceeds_float16: bool  # fits its dtype, but would not if deployed in float16

    @property
    def passed(self) -> bool:
        return self.error <= self.tolerance  # False for NaN too


def try_fold(
    ctx: Context,
    site: BatchNormSite,
    parts: list[Part],
    tolerance: float | None,
    template: FoldEntry,
) -> FoldEntry:
    """Fold every part (one layer each) or none: a BN cannot be half folded."""
    direction = parts[0][1].direction
    targets = [str(plan.layer_node.target) for _, plan in parts]
    kinds = dict.fromkeys(type(plan.layer).__name__ for _, plan in parts)
    weight = parts[0][1].layer.weight
    assert isinstance(weight, Tensor)
    entry = replace(
        template,
        direction=direction,
        target=", ".join(targets),
        target_kind="+".join(kinds),
        dtype=str(weight.dtype).removeprefix("torch."),
    )
    candidates: list[_Candidate] = []
    for part, plan in parts:
        candidate = _fold_part(ctx, part, plan, tolerance)
        if isinstance(candidate, Refusal):
            return replace(entry, reason_code=candidate.code, reason=candidate.message)
        if not candidate.passed:
            target = plan.layer_node.target
            return replace(
                entry,
                error=candidate.error,
                baseline_error=candidate.baseline_error,
                tolerance=candidate.tolerance,
                reason_code="verification_failed",
                reason=f"fold into {target} rolled back: error {candidate.error:.3g} "
                f"> {candidate.tolerance:.3g}",
            )
        if candidate.exceeds_float16 and "exceeds_float16_range" not in entry.flags:
            entry = replace(entry, flags=[*entry.flags, "exceeds_float16_range"])
        candidates.append(candidate)
    worst = max(candidates, key=lambda c: c.error / c.tolerance if c.tolerance else c.error)
    baselines = [c.baseline_error for c in candidates if c.baseline_error is not None]
    for candidate in candidates:
        _install(candidate.layer, candidate.weight, candidate.bias)
    _remove_batchnorm(ctx, site, parts[0][1])
    return replace(
        entry,
        status="folded",
        error=worst.error,
        baseline_error=max(baselines) if baselines else None,
        tolerance=worst.tolerance,
    )


def _fold_part(
    ctx: Context, site: BatchNormSite, plan: Plan, tolerance: float | None
) -> _Candidate | Refusal:
    """Compute one layer's folded parameters in float64, range-check and verify them."""
    layer = plan.layer
    weight, bias = layer.weight, layer.bias
    assert isinstance(weight, Tensor) and (bias is None or isinstance(bias, Tensor))
    dtype = weight.dtype
    bias_dtype = dtype if bias is None else bias.dtype
    scale, shift = bn_affine(site.running_mean, site.running_var, site.weight, site.bias, site.eps)
    fold = fold_backward if plan.direction == "backward" else fold_forward
    # Cast once to float64, fold, cast once back: no intermediate rounding.
    original64 = {"weight": weight.detach().to(F64)}
    if bias is not None:
        original64["bias"] = bias.detach().to(F64)
    new_w64, new_b64 = fold(
        original64["weight"],
        original64.get("bias"),
        scale[plan.channel_map],
        shift[plan.channel_map],
        groups=int(getattr(layer, "groups", 1)),
        transposed=is_transposed(layer),
    )
    peak_w, peak_b = max_abs(new_w64), max_abs(new_b64)
    if not (fits_dtype(peak_w, dtype) and fits_dtype(peak_b, bias_dtype)):
        name, peak = str(dtype).removeprefix("torch."), max(peak_w, peak_b)
        return Refusal(
            "dtype_range",
            f"folded parameters of {plan.layer_node.target} overflow {name} "
            f"(max |value| {peak:.3g})",
        )
    new_w, new_b = new_w64.to(dtype), new_b64.to(bias_dtype)
    check = check_site(ctx, site, plan, new_w, new_b, original64=original64, tolerance=tolerance)
    limit = tolerance if tolerance is not None else default_tolerance(dtype, check.baseline_error)
    exceeds = max(peak_w, peak_b) > FLOAT16_MAX
    return _Candidate(layer, new_w, new_b, check.error, check.baseline_error, limit, exceeds)


def _install(layer: nn.Module, weight: Tensor, bias: Tensor) -> None:
    old = layer.weight
    assert isinstance(old, Tensor)
    layer.weight = nn.Parameter(weight, requires_grad=old.requires_grad)
    layer.bias = nn.Parameter(bias, requires_grad=old.requires_grad)


def _remove_batchnorm(ctx: Context, site: BatchNormSite, plan: Plan) -> None:
    """Remove the BN node from the graph, keeping the recorded values true for later folds.

    The values that flow past the removed BN are unchanged; those inside the
    rewritten site are not, and are recomputed where a later fold may read them.
    """
    node = site.node
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


def stat_flags(entry: FoldEntry, site: BatchNormSite, scale: Tensor) -> FoldEntry:
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

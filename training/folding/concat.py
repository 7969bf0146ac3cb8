"""Backward fold of a BN that follows a concat: split it over the producers.

``BN(cat([L1(x1), L2(x2)], dim=1))`` equals ``cat([L1'(x1), L2'(x2)])`` where each
``Li'`` absorbs the BN channels its output lands on (all of them when the concat
joins another dimension). No other tool does this. It is
exact when every concatenated tensor comes (through rearrangements) from its own
foldable layer that feeds nothing else; otherwise the BN is refused as a whole
(half a BN cannot stay behind).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch.fx.node import Node

from training.folding.plan import BatchNormSite, Context, Plan, Refusal, exclusive, plan_backward

CONCAT_FUNCTIONS = (torch.cat, torch.concat)

Part = tuple[BatchNormSite, Plan]


def _concat_arguments(node: Node) -> tuple[object, object]:
    tensors = node.args[0] if node.args else node.kwargs.get("tensors")
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    return tensors, dim


def plan_concat(ctx: Context, site: BatchNormSite) -> list[Part] | Refusal | None:
    """One backward part per concatenated tensor, a refusal, or None if no concat feeds the BN."""
    cat = site.input
    if not (cat.op == "call_function" and cat.target in CONCAT_FUNCTIONS):
        return None
    tensors, dim = _concat_arguments(cat)
    if not (isinstance(tensors, list | tuple) and all(isinstance(t, Node) for t in tensors)):
        return Refusal("no_layer", "its input is a concat of non-tensor arguments")
    rank = len(ctx.env[cat.name].shape)
    if not isinstance(dim, int):
        return Refusal("no_layer", "its input is a concat along a computed dimension")
    # Joined along the channels, each tensor meets a window of the BN; joined along
    # another dimension, each tensor carries every channel and meets the whole BN.
    on_channels = dim % rank == 1
    refusal = exclusive(ctx, [cat])
    if refusal:
        return refusal
    if len(set(tensors)) != len(tensors):
        return Refusal("fan_out", "the same tensor is concatenated more than once")
    parts: list[Part] = []
    offset = 0
    for index, tensor in enumerate(tensors):
        assert isinstance(tensor, Node)
        width = int(ctx.env[tensor.name].shape[1])
        window = slice(offset, offset + width) if on_channels else slice(None)
        part = replace(
            site,
            input=tensor,
            running_mean=site.running_mean[window],
            running_var=site.running_var[window],
            weight=None if site.weight is None else site.weight[window],
            bias=None if site.bias is None else site.bias[window],
        )
        plan = plan_backward(ctx, part)
        if isinstance(plan, Refusal):
            return Refusal(plan.code, f"concat input #{index}: {plan.message}")
        parts.append((part, plan))
        offset += width
    return parts

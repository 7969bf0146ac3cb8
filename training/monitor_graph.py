"""The monitor's internal graph output, added to a folded network before export.

For every monitored tensor ``x`` (channels on axis 1) the graph computes, per
sample and channel, the mean of ``x`` and of ``x²`` over spatial positions
(GlobalAveragePool); then, per input feature or channel, the
fraction of its values at or below each of its training quantiles. All of it is
one ``(N, columns)`` output in the layout ``bnfold.card.MonitorSpec`` documents.
These nodes sit beside the network: the logits are the same computation as
without them, and the service gets the statistics in the same ONNX Runtime call
as the prediction.

Measured on the digits CNN (one thread, single samples): each ONNX node costs
about a microsecond at these sizes, so the graph uses as few as it can (three per
tensor, one Concat and Flatten per run of same-rank tensors). Centring ``x`` on its
reference mean first (against cancellation in ``E[x²] - E[x]²``) cost another node
per tensor for no measurable gain: a BatchNorm's tensors have means within a few
standard deviations of zero, and the service does that subtraction in float64.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import onnx
import torch
from onnx import helper, numpy_helper
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from training.errors import UsageError


@dataclass(frozen=True)
class Tap:
    """A tensor to monitor: the fx node holding it (channels on axis 1) and its width."""

    node: str
    channels: int


class WithMonitor(nn.Module):
    """``(logits, softmax(logits), moments)`` from a network returning ``(logits, moments)``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        logits, moments = self.net(x)
        return logits, torch.softmax(logits, dim=-1), moments


def with_moments(
    gm: fx.GraphModule, taps: Sequence[Tap], quantiles: Tensor, example: Tensor
) -> fx.GraphModule:
    """A copy of ``gm`` (one input, returns logits) that returns ``(logits, statistics)``.

    ``quantiles`` is ``(features, levels)``: the input's training quantiles per
    feature (tabular) or channel (image).
    """
    out_gm = copy.deepcopy(gm)
    graph = out_gm.graph
    nodes = {node.name: node for node in graph.nodes}
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    output = next(n for n in graph.nodes if n.op == "output")
    if len(placeholders) != 1 or not isinstance(output.args[0], fx.Node):
        raise UsageError("drift monitoring needs a network with one input that returns logits")
    probe = copy.deepcopy(gm)
    with torch.no_grad():
        ShapeProp(probe).propagate(example)
    shapes = {
        n.name: n.meta["tensor_meta"].shape for n in probe.graph.nodes if "tensor_meta" in n.meta
    }

    parts: list[fx.Node] = []
    with graph.inserting_before(output):
        run: list[fx.Node] = []  # pooled tensors of the same rank, flattened together
        run_rank = 0
        for tap in taps:
            node = nodes[tap.node]
            shape = shapes[node.name]
            if len(shape) < 2 or int(shape[1]) != tap.channels:
                raise UsageError(
                    f"monitored tensor {node.name} has shape {list(shape)}, "
                    f"expected {tap.channels} channels on axis 1"
                )
            square = graph.call_function(torch.mul, (node, node))
            if run and len(shape) != run_rank:
                parts.append(_flatten(graph, run))
                run = []
            if len(shape) == 2:
                parts += [node, square]
                continue
            pool = _POOLS.get(len(shape), _mean_pool)
            run += [graph.call_function(pool, (node, 1)), graph.call_function(pool, (square, 1))]
            run_rank = len(shape)
        cdf, rank = _cdf_fractions(out_gm, graph, placeholders[0], quantiles, shapes)
        pooled_with_run = rank == 4 and (not run or run_rank == 4)
        if pooled_with_run:
            run.append(cdf)  # pooled like the moments: one Flatten for all
        if run:
            parts.append(_flatten(graph, run))
        if not pooled_with_run:
            parts.append(cdf if rank == 2 else _flatten(graph, [cdf]))
        moments = parts[0] if len(parts) == 1 else graph.call_function(torch.cat, (parts, 1))
    output.args = ((output.args[0], moments),)
    graph.lint()
    out_gm.recompile()
    return out_gm


def _mean_pool(x: Tensor, _size: int) -> Tensor:
    """Mean over every axis after the channels, keeping them (ranks without a pool op)."""
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


_POOLS = {
    3: nn.functional.adaptive_avg_pool1d,
    4: nn.functional.adaptive_avg_pool2d,
    5: nn.functional.adaptive_avg_pool3d,
}


def _flatten(graph: fx.Graph, pooled: list[fx.Node]) -> fx.Node:
    joined = pooled[0] if len(pooled) == 1 else graph.call_function(torch.cat, (pooled, 1))
    return graph.call_function(torch.flatten, (joined, 1))


def _cdf_fractions(
    gm: fx.GraphModule,
    graph: fx.Graph,
    x: fx.Node,
    quantiles: Tensor,
    shapes: dict[str, torch.Size],
) -> tuple[fx.Node, int]:
    """Per sample, the fraction of each feature's values <= each of its quantiles (one value
    per tabular feature; every pixel of an image channel), feature-major, and the node's
    rank: ``(N, features x levels)``, or pooled ``(N, features x levels, 1...)`` for images."""
    shape = shapes[x.name]
    features, levels = quantiles.shape
    if shape[1] != features:
        raise UsageError(f"the input has {shape[1]} features or channels, {features} quantiles")
    if len(shape) == 2:  # one value per feature: the fraction is 0 or 1
        gm.register_buffer("bnfold_monitor_quantiles", quantiles.to(torch.float32)[None])
        values = graph.call_method("unsqueeze", (x, -1))
        below = graph.call_function(torch.le, (values, graph.get_attr("bnfold_monitor_quantiles")))
        return graph.call_function(torch.flatten, (graph.call_method("float", (below,)), 1)), 2
    # (N, C, 1, *spatial) <= (1, C, levels, 1...): pooled over the spatial axes.
    view = (1, features, levels) + (1,) * (len(shape) - 2)
    gm.register_buffer("bnfold_monitor_quantiles", quantiles.to(torch.float32).reshape(view))
    values = graph.call_method("unsqueeze", (x, 2))
    below = graph.call_function(torch.le, (values, graph.get_attr("bnfold_monitor_quantiles")))
    flat = graph.call_method("flatten", (graph.call_method("float", (below,)), 1, 2))
    pool = _POOLS.get(len(shape), _mean_pool)
    return graph.call_function(pool, (flat, 1)), len(shape)


def global_average_pools(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with every ReduceMean over all spatial axes of a 4-D tensor (keepdims) as a
    GlobalAveragePool: the same numbers, and ONNX Runtime runs it in its blocked (NCHWc)
    layout without reordering the convolution's output first (measured: ~1 µs a node)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    ranks = {
        v.name: len(v.type.tensor_type.shape.dim)
        for v in [*inferred.graph.value_info, *inferred.graph.input]
        if v.type.tensor_type.HasField("shape")
    }
    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        keep = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
        axes = constants.get(node.input[1]) if len(node.input) > 1 else None
        if (
            node.op_type == "ReduceMean"
            and keep == 1
            and axes is not None
            and ranks.get(node.input[0]) == 4
            and sorted(int(a) % 4 for a in axes.ravel()) == [2, 3]
        ):
            node = helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output))
        nodes.append(node)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    kept = [i for i in out.graph.initializer if i.name in used]
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept)
    return out

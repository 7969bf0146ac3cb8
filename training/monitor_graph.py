"""The monitor's internal graph output, added to a folded network before export.

For every monitored tensor ``x`` (channels on axis 1) the graph computes, per
sample and channel, the mean over spatial positions of ``x - m`` and of
``(x - m)²`` (``m``: the reference mean, so the service's variance
``E[(x-m)²] - E[x-m]²`` does not cancel catastrophically); then, per input feature
or channel, the fraction of its values at or below each of its training
quantiles. All of it is one ``(N, columns)`` output in the layout
``bnfold.card.MonitorSpec`` documents. These nodes sit beside the network: the
logits are the same computation as without them, and the service gets the
statistics in the same ONNX Runtime call as the prediction.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from training.errors import UsageError


@dataclass(frozen=True)
class Tap:
    """A tensor to monitor: the fx node holding it (channels on axis 1) and its mean."""

    node: str
    mean: Tensor  # (channels,)


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
        for index, tap in enumerate(taps):
            node = nodes[tap.node]
            rank = len(shapes[node.name])
            channels = int(shapes[node.name][1])
            if tap.mean.numel() != channels:
                raise ValueError(
                    f"monitored tensor {node.name}: {channels} channels, mean has "
                    f"{tap.mean.numel()}"
                )
            name = f"bnfold_monitor_mean_{index}"
            view = (1, channels) + (1,) * (rank - 2)
            out_gm.register_buffer(name, tap.mean.detach().to(torch.float32).reshape(view))
            centred = graph.call_function(torch.sub, (node, graph.get_attr(name)))
            square = graph.call_function(torch.mul, (centred, centred))
            if rank > 2:
                axes = tuple(range(2, rank))
                centred = graph.call_method("mean", (centred, axes))
                square = graph.call_method("mean", (square, axes))
            parts += [centred, square]
        parts.append(_cdf_fractions(out_gm, graph, placeholders[0], quantiles, shapes))
        moments = graph.call_function(torch.cat, (parts, 1))
    output.args = ((output.args[0], moments),)
    graph.lint()
    out_gm.recompile()
    return out_gm


def _cdf_fractions(
    gm: fx.GraphModule,
    graph: fx.Graph,
    x: fx.Node,
    quantiles: Tensor,
    shapes: dict[str, torch.Size],
) -> fx.Node:
    """``(N, features x levels)``: per sample, the fraction of each feature's values <= each
    of its quantiles (one value per tabular feature; every pixel of an image channel)."""
    shape = shapes[x.name]
    features, levels = quantiles.shape
    if shape[1] != features:
        raise ValueError(f"the input has {shape[1]} features or channels, {features} quantile rows")
    positions = int(torch.Size(shape[2:]).numel())
    gm.register_buffer(
        "bnfold_monitor_quantiles",
        quantiles.detach().to(torch.float32).reshape(1, features, 1, levels),
    )
    values = graph.call_method("reshape", (x, (-1, features, positions, 1)))
    below = graph.call_function(torch.le, (values, graph.get_attr("bnfold_monitor_quantiles")))
    fractions = graph.call_method("mean", (graph.call_method("float", (below,)), 2))
    return graph.call_method("reshape", (fractions, (-1, features * levels)))

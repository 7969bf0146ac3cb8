"""Decide, for one BatchNorm node, whether and where it can be folded.

A *plan* names the layer, the direction and the channel map; a *refusal* says
why not. Every rule here exists because breaking it gives a wrong model:

- the values that get rescaled must flow only into the BN (backward) or only
  from the BN into the layer (forward): no fan-out, not a model output;
- the layer's weights must be used at one place only (no second call, no tie);
- the BN must use running statistics (``track_running_stats=True``);
- the BN channel of every layer feature must be unique: checked with a probe
  tensor pushed through the graph, so a BN1d on ``(N, C, L)`` after a Linear is
  refused even when ``C == L`` (a size comparison would accept it);
- forward only: nothing non-linear in between, and every kernel tap must read
  real input (padding 0, or reflect/replicate/circular padding, which commute
  with a per-channel affine map); a ConvTranspose must have stride 1 and full
  overlap, otherwise the shift term differs at the borders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, fx, nn
from torch.fx.node import Node
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd

from training.folding import graph as g

Direction = Literal["backward", "forward"]


@dataclass(frozen=True)
class Refusal:
    """Why a BN cannot be folded: a stable ``code`` and a sentence for humans."""

    code: str
    message: str


@dataclass(frozen=True)
class BatchNormSite:
    """A BatchNorm call in the graph with its (constant) statistics."""

    node: Node
    input: Node
    kind: str
    running_mean: Tensor
    running_var: Tensor
    weight: Tensor | None
    bias: Tensor | None
    eps: float


@dataclass(frozen=True)
class Plan:
    """Fold ``site`` into ``layer`` in ``direction``; ``chain`` = rearrangements in between."""

    direction: Direction
    layer_node: Node
    layer: nn.Module
    chain: tuple[Node, ...]
    channel_map: Tensor  # layer feature (out for backward, in for forward) -> BN channel


@dataclass(frozen=True)
class Context:
    """The traced module, recorded node values and sharing facts, for the planner."""

    gm: fx.GraphModule
    env: dict[str, Any]
    sharing: g.Sharing


def batchnorm_site(ctx: Context, node: Node) -> BatchNormSite | Refusal:
    """Read a BN node's statistics; refuse one that normalises with batch statistics."""
    batch_stats = Refusal(
        "batch_statistics",
        "uses batch statistics even in eval mode (track_running_stats=False): no constant to fold",
    )
    module = g.module_of(ctx.gm, node)
    if module is not None:
        assert isinstance(module, nn.modules.batchnorm._BatchNorm)
        mean, var = module.running_mean, module.running_var
        if not module.track_running_stats or mean is None or var is None:
            return batch_stats
        data = node.args[0]
        assert isinstance(data, Node)
        return BatchNormSite(
            node, data, type(module).__name__, mean, var, module.weight, module.bias, module.eps
        )
    args = g.batch_norm_arguments(node)
    if args["training"] is not False or args["running_mean"] is None:
        return batch_stats
    try:
        mean = g.get_attr_value(ctx.gm, args["running_mean"])
        var = g.get_attr_value(ctx.gm, args["running_var"])
        weight = g.get_attr_value(ctx.gm, args["weight"])
        bias = g.get_attr_value(ctx.gm, args["bias"])
    except LookupError:
        return Refusal(
            "non_constant_statistics", "F.batch_norm with statistics computed in the graph"
        )
    data = args["input"]
    assert isinstance(data, Node) and mean is not None and var is not None
    return BatchNormSite(node, data, "F.batch_norm", mean, var, weight, bias, float(args["eps"]))  # type: ignore[arg-type]


def is_transposed(layer: nn.Module) -> bool:
    """Whether the layer is a ConvTranspose (weight laid out ``[C_in, C_out/g, k...]``)."""
    return isinstance(layer, _ConvTransposeNd)


def _feature_axis(layer: nn.Module) -> int:
    # Counted from the end so that unbatched conv inputs work too.
    return -(len(layer.kernel_size) + 1) if isinstance(layer, _ConvNd) else -1


def _features(layer: nn.Module, side: Literal["in", "out"]) -> int:
    if isinstance(layer, nn.Linear):
        return layer.in_features if side == "in" else layer.out_features
    assert isinstance(layer, _ConvNd)
    return layer.in_channels if side == "in" else layer.out_channels


def _probe(shape: torch.Size, axis: int) -> Tensor:
    """A float64 tensor of ``shape`` holding each element's index along ``axis``."""
    index = torch.arange(shape[axis], dtype=torch.float64)
    view = [1] * len(shape)
    view[axis] = shape[axis]
    return index.reshape(view).expand(shape).contiguous()


def _function(keys: Tensor, values: Tensor, n_keys: int) -> Tensor | None:
    """The map ``key -> value`` if every key in ``0..n_keys-1`` occurs with a single value."""
    k, v = keys.reshape(-1).long(), values.reshape(-1).long()
    mapping = torch.full((n_keys,), -1, dtype=torch.long)
    mapping[k] = v
    if bool((mapping < 0).any()) or not torch.equal(mapping[k], v):
        return None
    return mapping


def run_chain(ctx: Context, chain: tuple[Node, ...], first: Node, value: Tensor) -> Tensor:
    """Push ``value`` (standing for ``first``'s output) through the rearrangement chain."""
    prev = first
    for node in chain:
        value = g.apply_node(node, ctx.gm, prev, value, ctx.env)
        prev = node
    return value


def exclusive(ctx: Context, nodes: list[Node]) -> Refusal | None:
    """Refuse if any of ``nodes`` is a model output or feeds more than one consumer."""
    for node in nodes:
        users = g.data_users(node)
        name = g.describe(ctx.gm, node)
        if any(u.op == "output" for u in users):
            return Refusal("model_output", f"{name} is also a model output")
        if len(users) > 1:
            others = ", ".join(g.describe(ctx.gm, u) for u in users)
            return Refusal("fan_out", f"{name} feeds several consumers ({others})")
    return None


def _unshared(ctx: Context, node: Node, layer: nn.Module) -> Refusal | None:
    name = g.describe(ctx.gm, node)
    if ctx.sharing.calls[str(node.target)] > 1:
        count = ctx.sharing.calls[str(node.target)]
        return Refusal("shared_module", f"{name} is called at {count} places in the graph")
    if ctx.sharing.is_tied(layer):
        return Refusal("tied_weight", f"{name} shares a parameter with another module or use")
    return None


def plan_backward(ctx: Context, site: BatchNormSite) -> Plan | Refusal:
    """Fold into the layer that produces the BN's input (through rearrangements)."""
    chain: list[Node] = []
    producer = site.input
    while g.is_passthrough(ctx.gm, producer, ctx.env):
        chain.insert(0, producer)
        producer = producer.args[0]  # type: ignore[assignment]
    layer = g.foldable_layer(ctx.gm, producer)
    if layer is None:
        name = g.describe(ctx.gm, producer)
        return Refusal("no_layer", f"its input comes from {name}, not a Linear/Conv/ConvTranspose")
    refusal = exclusive(ctx, [producer, *chain]) or _unshared(ctx, producer, layer)
    if refusal:
        return refusal
    shape = ctx.env[producer.name].shape
    n_out = _features(layer, "out")
    mapping: Tensor | None
    if not chain and _feature_axis(layer) % len(shape) == 1:
        mapping = torch.arange(n_out)  # what the probe would find, for free
    else:
        at_bn = run_chain(ctx, tuple(chain), producer, _probe(shape, _feature_axis(layer)))
        mapping = _function(at_bn, _probe(at_bn.shape, 1), n_out)
        shape = at_bn.shape
    if mapping is None:
        return Refusal(
            "axis_mismatch",
            f"BN normalises dim 1 of {tuple(shape)}, which is not the output-feature axis "
            f"of {g.describe(ctx.gm, producer)}",
        )
    return Plan("backward", producer, layer, tuple(chain), mapping)


def _forward_padding(layer: nn.Module) -> Refusal | None:
    if is_transposed(layer):
        assert isinstance(layer, _ConvTransposeNd)
        if any(s != 1 for s in layer.stride):
            return Refusal(
                "conv_transpose_stride",
                f"strided ConvTranspose (stride {tuple(layer.stride)}): the BN shift would reach "
                "output positions through a varying number of taps",
            )
        # Output o reads input o + padding - dilation*k for every tap k; all of them exist
        # iff padding >= dilation*(kernel-1) + output_padding (the extra rows see fewer).
        dims = zip(
            layer.padding, layer.dilation, layer.kernel_size, layer.output_padding, strict=True
        )
        if any(p < d * (k - 1) + op for p, d, k, op in dims):  # type: ignore[operator]
            return Refusal(
                "conv_transpose_border",
                "ConvTranspose border outputs see fewer taps "
                "(padding < dilation*(kernel-1) + output_padding)",
            )
    elif (
        isinstance(layer, _ConvNd)
        and layer.padding_mode == "zeros"
        and any(layer._reversed_padding_repeated_twice)
    ):
        return Refusal(
            "zero_padding",
            f"the next conv zero-pads (padding {layer.padding}): the padded zeros would be "
            "shifted too; only padding 0 or reflect/replicate/circular is exact",
        )
    return None


def plan_forward(ctx: Context, site: BatchNormSite) -> Plan | Refusal:
    """Fold into the layer that consumes the BN's output (through rearrangements)."""
    chain: list[Node] = []
    current = site.node
    while True:
        refusal = exclusive(ctx, [current])
        if refusal:
            return refusal
        if not g.data_users(current):
            return Refusal("no_layer", f"the output of {g.describe(ctx.gm, current)} is unused")
        consumer = g.data_users(current)[0]
        reads_current = bool(consumer.args) and consumer.args[0] is current
        if not (reads_current and g.is_passthrough(ctx.gm, consumer, ctx.env)):
            break
        chain.append(consumer)
        current = consumer
    layer = g.foldable_layer(ctx.gm, consumer) if reads_current else None
    if layer is None:
        name = g.describe(ctx.gm, consumer)
        if g.is_nonlinear(ctx.gm, consumer):
            return Refusal("nonlinearity", f"a non-linearity ({name}) follows the BN")
        return Refusal("no_layer", f"its output goes to {name}, not a Linear/Conv/ConvTranspose")
    refusal = _unshared(ctx, consumer, layer) or _forward_padding(layer)
    if refusal:
        return refusal
    shape = ctx.env[site.node.name].shape
    axis, n_in = _feature_axis(layer), _features(layer, "in")
    mapping: Tensor | None
    if not chain and axis % len(shape) == 1:
        mapping = torch.arange(n_in)  # what the probe would find, for free
    else:
        at_layer = run_chain(ctx, tuple(chain), site.node, _probe(shape, 1))
        mapping = _function(_probe(at_layer.shape, axis), at_layer, n_in)
    if mapping is None:
        return Refusal(
            "axis_mismatch",
            f"the input features of {g.describe(ctx.gm, consumer)} do not each come from a "
            "single BN channel",
        )
    return Plan("forward", consumer, layer, tuple(chain), mapping)

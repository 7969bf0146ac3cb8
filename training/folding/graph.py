"""Graph side of folding: trace, record activations, classify nodes, detect sharing.

Everything here reads the torch.fx graph; nothing changes weights. The fold
planner (``plan.py``) asks these questions about a node: is it a BatchNorm, a
foldable layer, a pure rearrangement ("passthrough") or a non-linearity; which
of its users consume data (``x.size(0)`` does not); is its module called twice
or its weight tied to another module.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.fx.node import Argument, Node, map_arg
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from training.folding.errors import FoldingError

LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
# Pure rearrangements of elements (or identities in eval mode): a per-channel
# affine map commutes with them as long as the channel mapping is kept, which
# the planner checks with a probe tensor.
PASSTHROUGH_MODULES = (nn.Identity, nn.Flatten, nn.Unflatten, nn.modules.dropout._DropoutNd)
PASSTHROUGH_METHODS = frozenset(
    {"view", "reshape", "flatten", "unflatten", "permute", "transpose", "contiguous"}
    | {"squeeze", "unsqueeze"}
)
PASSTHROUGH_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset(
    {torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.squeeze, torch.unsqueeze}
)
DROPOUT_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset(
    {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout}
)
# Uses that read only metadata: they see the same shape before and after a fold.
METADATA_METHODS = frozenset({"size", "dim", "numel", "type", "is_contiguous"})
NONLINEAR_NAMES = frozenset(
    {"relu", "relu6", "relu_", "gelu", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid"}
    | {"leaky_relu", "elu", "selu", "celu", "softplus", "mish", "softmax", "log_softmax"}
    | {"hardtanh", "prelu", "glu", "logsigmoid", "abs", "clamp", "max_pool2d", "max_pool1d"}
)
OTHER_NORM_MODULES = (nn.LayerNorm, nn.GroupNorm, _InstanceNorm, nn.LocalResponseNorm, nn.RMSNorm)
OTHER_NORM_FUNCTIONS: dict[Callable[..., Any], str] = {
    F.layer_norm: "F.layer_norm",
    F.group_norm: "F.group_norm",
    F.instance_norm: "F.instance_norm",
    F.rms_norm: "F.rms_norm",
}


def trace(model: nn.Module) -> fx.GraphModule:
    """``torch.fx.symbolic_trace``, with a one-line error for untraceable models."""
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, ...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise FoldingError(
            f"cannot trace {type(model).__name__} with torch.fx ({first}); "
            "data-dependent control flow is not supported"
        ) from exc


class _Recorder(fx.Interpreter):
    """Runs the graph once and keeps every node's value (the site inputs come from here)."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm, garbage_collect_values=True)
        self.values: dict[str, Any] = {}

    def run_node(self, n: Node) -> Any:
        value = super().run_node(n)
        self.values[n.name] = value
        return value


def record(gm: fx.GraphModule, inputs: tuple[Tensor, ...]) -> tuple[dict[str, Any], Any]:
    """Every node's value on ``inputs`` (by node name), and the model output."""
    recorder = _Recorder(gm)
    try:
        with torch.no_grad():
            out = recorder.run(*inputs)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise FoldingError(f"the model fails on the example inputs: {first}") from exc
    return recorder.values, out


def apply_node(
    node: Node, gm: fx.GraphModule, data: Node, value: Tensor, env: dict[str, Any]
) -> Any:
    """Evaluate ``node`` with ``value`` in place of ``data`` and ``env`` for other arguments."""

    def load(arg: Node) -> Any:
        return value if arg is data else env[arg.name]

    args = map_arg(node.args, load)
    kwargs = map_arg(node.kwargs, load)
    assert isinstance(args, tuple) and isinstance(kwargs, dict)
    if node.op == "call_module":
        return gm.get_submodule(str(node.target))(*args, **kwargs)
    if node.op == "call_method":
        return getattr(args[0], str(node.target))(*args[1:], **kwargs)
    assert node.op == "call_function" and callable(node.target)
    return node.target(*args, **kwargs)


def module_of(gm: fx.GraphModule, node: Node) -> nn.Module | None:
    """The submodule a ``call_module`` node calls, else None."""
    return gm.get_submodule(str(node.target)) if node.op == "call_module" else None


def is_batchnorm(gm: fx.GraphModule, node: Node) -> bool:
    """A BatchNorm module call (any ``_BatchNorm``, SyncBatchNorm too) or ``F.batch_norm``."""
    if node.op == "call_function":
        return node.target is F.batch_norm
    return isinstance(module_of(gm, node), _BatchNorm)


def batch_norm_arguments(node: Node) -> dict[str, Argument]:
    """The arguments of an ``F.batch_norm`` node by parameter name, defaults filled in."""
    bound = inspect.signature(F.batch_norm).bind(*node.args, **node.kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def foldable_layer(gm: fx.GraphModule, node: Node) -> nn.Module | None:
    """The Linear/Conv/ConvTranspose module of a plain ``layer(x)`` call, else None.

    Subclasses that override ``forward`` are not trusted: their maths is unknown.
    """
    module = module_of(gm, node)
    if module is None or len(node.args) != 1 or node.kwargs:
        return None
    for base in LAYER_TYPES:
        if isinstance(module, base) and type(module).forward is base.forward:
            weight = getattr(module, "weight", None)
            if isinstance(weight, Tensor) and weight.dtype.is_floating_point:
                return module
    return None


def is_passthrough(gm: fx.GraphModule, node: Node, env: dict[str, Any]) -> bool:
    """A pure rearrangement or eval identity of its first argument (other args not tensors)."""
    if not node.args or not isinstance(node.args[0], Node):
        return False
    others = [a for a in node.all_input_nodes if a is not node.args[0]]
    if any(isinstance(env.get(a.name), Tensor) for a in others):
        return False
    if node.op == "call_module":
        module = module_of(gm, node)
        return isinstance(module, PASSTHROUGH_MODULES) and not module.training
    if node.op == "call_method":
        return node.target in PASSTHROUGH_METHODS
    if node.op == "call_function" and node.target in DROPOUT_FUNCTIONS:
        assert callable(node.target)
        bound = inspect.signature(node.target).bind(*node.args, **node.kwargs)
        bound.apply_defaults()
        return bound.arguments.get("training") is False
    return node.op == "call_function" and node.target in PASSTHROUGH_FUNCTIONS


def is_nonlinear(gm: fx.GraphModule, node: Node) -> bool:
    """An activation module or function (used only to word the refusal)."""
    module = module_of(gm, node)
    if module is not None:
        return type(module).__module__ == "torch.nn.modules.activation"
    name = getattr(node.target, "__name__", node.target)
    return node.op in ("call_function", "call_method") and name in NONLINEAR_NAMES


def is_metadata_use(node: Node) -> bool:
    """``x.size()``, ``x.shape``, ``x.dtype``...: reads no values, unchanged by a fold."""
    if node.op == "call_method":
        return node.target in METADATA_METHODS
    return node.op == "call_function" and node.target is getattr


def data_users(node: Node) -> list[Node]:
    """The users of ``node`` that consume its values (the output node included)."""
    return [u for u in node.users if not is_metadata_use(u)]


def describe(gm: fx.GraphModule, node: Node) -> str:
    """A short human name for a node: ``layer1.conv (Conv2d)``, ``relu``, ``input x``."""
    if node.op == "placeholder":
        return f"model input {node.target}"
    module = module_of(gm, node)
    if module is not None:
        return f"{node.target} ({type(module).__name__})"
    return str(getattr(node.target, "__name__", node.target))


@dataclass(frozen=True)
class Sharing:
    """How often each module is called and which parameters are shared."""

    calls: Counter[str]
    shared_params: frozenset[int]  # id() of parameters owned by 2+ modules or read by get_attr

    @classmethod
    def of(cls, gm: fx.GraphModule) -> Sharing:
        """Collect the call counts and shared parameters of a traced module."""
        calls = Counter(str(n.target) for n in gm.graph.nodes if n.op == "call_module")
        owners: Counter[int] = Counter()
        for module in gm.modules():
            for param in module._parameters.values():
                if param is not None:
                    owners[id(param)] += 1
        shared = {pid for pid, count in owners.items() if count > 1}
        for n in gm.graph.nodes:
            if n.op == "get_attr":
                value = _attr(gm, str(n.target))
                if isinstance(value, nn.Parameter):
                    shared.add(id(value))
        return cls(calls, frozenset(shared))

    def is_tied(self, module: nn.Module) -> bool:
        """Whether one of ``module``'s own parameters is also used elsewhere."""
        return any(
            id(p) in self.shared_params for p in module._parameters.values() if p is not None
        )


def _attr(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def get_attr_value(gm: fx.GraphModule, arg: Argument) -> Tensor | None:
    """The tensor behind a ``get_attr`` node argument; None for None; raises for others."""
    if arg is None:
        return None
    if isinstance(arg, Node) and arg.op == "get_attr":
        value = _attr(gm, str(arg.target))
        if isinstance(value, Tensor):
            return value
    raise LookupError("not a constant attribute")


def other_norms(gm: fx.GraphModule) -> list[tuple[str, str]]:
    """``(name, kind)`` of every LayerNorm/GroupNorm/InstanceNorm/... call in the graph."""
    found: list[tuple[str, str]] = []
    for node in gm.graph.nodes:
        module = module_of(gm, node)
        if isinstance(module, OTHER_NORM_MODULES):
            found.append((str(node.target), type(module).__name__))
        elif node.op == "call_function" and node.target in OTHER_NORM_FUNCTIONS:
            found.append((node.name, OTHER_NORM_FUNCTIONS[node.target]))
    return found

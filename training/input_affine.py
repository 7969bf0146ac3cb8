"""Put an input standardization ``(x - mean) / std`` in front of any module, exactly.

A user's module takes standardized input (e.g. after torchvision's ``Normalize``);
the exported graph takes raw input. Standardization is a per-channel affine map,
i.e. a frozen BatchNorm with ``running_var = std²`` and ``eps = 0``, so the folding
engine's forward fold decides whether it folds into the first layer: it does when
the input feeds one Linear/Conv (through rearrangements such as ``Flatten``) whose
every tap reads real input, and the fold is verified against a float64 oracle like
any other. Otherwise (a zero-padded stem conv, the input read twice...) the map
stays in the graph as an explicit per-channel ``Sub``/``Div``: exact as well, at
the cost of two element-wise nodes. ``StandardizationPlacement`` says which.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

from training.folding import graph as g
from training.folding.apply import stat_flags, try_fold
from training.folding.math import bn_affine
from training.folding.plan import BatchNormSite, Context, Refusal, batchnorm_site, plan_forward
from training.folding.report import FoldEntry
from training.module_trace import trace_module

NODE_NAME = "input_standardization"


@dataclass(frozen=True)
class StandardizationPlacement:
    """Where the input standardization went: folded into ``folded_into``, or kept explicit."""

    mean: list[float]
    std: list[float]
    folded_into: str | None  # the layer's qualified name; None: explicit Sub/Div in the graph
    reason: str = ""  # why it was not folded (the engine's refusal)
    error: float | None = None  # the fold's measured site error

    @property
    def folded(self) -> bool:
        return self.folded_into is not None

    def describe(self) -> str:
        """One sentence for the card and the console."""
        stats = f"mean {_short(self.mean)}, std {_short(self.std)}"
        if self.folded_into is not None:
            return f"standardized with {stats}, folded into {self.folded_into}"
        return (
            f"standardized with {stats}, kept in the graph as an explicit per-channel affine "
            f"(no exact fold: {self.reason})"
        )


class ExplicitStandardization(nn.Module):
    """``(x - mean) / std`` with buffers already shaped to broadcast over the channel axis."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, sample_dims: int) -> None:
        super().__init__()
        shape = (1, -1) + (1,) * (sample_dims - 1)
        self.register_buffer("mean", mean.detach().float().reshape(shape).clone())
        self.register_buffer("std", std.detach().float().reshape(shape).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def standardize_input(
    model: nn.Module, mean: np.ndarray, std: np.ndarray, example: torch.Tensor
) -> tuple[fx.GraphModule, StandardizationPlacement]:
    """A module computing ``model((x - mean) / std)`` for raw ``x``, with ``model``'s names.

    ``model`` (eval mode) is traced, not copied: the fold changes its first layer's
    parameters in place, so pass a copy. ``mean``/``std`` hold one value per channel
    (images) or feature (tabular); ``example`` (raw inputs) drives the fold check.
    """
    mean_t = torch.as_tensor(mean, dtype=torch.float32)
    std_t = torch.as_tensor(std, dtype=torch.float32)
    gm = trace_module(model)
    affine = _as_batchnorm(mean_t, std_t, example.dim() - 1)
    gm.add_submodule(NODE_NAME, affine)
    placeholder = next(n for n in gm.graph.nodes if n.op == "placeholder")
    with gm.graph.inserting_after(placeholder):
        node = gm.graph.call_module(NODE_NAME, (placeholder,))
    placeholder.replace_all_uses_with(node, delete_user_cb=lambda user: user is not node)
    gm.recompile()

    env, _ = g.record(gm, (example,))
    ctx = Context(gm, env, g.Sharing.of(gm))
    site = batchnorm_site(ctx, node)
    assert isinstance(site, BatchNormSite)  # running statistics, by construction
    placement = _fold(ctx, site, mean_t, std_t)
    if placement.folded:
        gm.delete_submodule(NODE_NAME)
    else:
        gm.add_submodule(NODE_NAME, ExplicitStandardization(mean_t, std_t, example.dim() - 1))
    gm.graph.lint()
    gm.recompile()
    return gm, placement


def _fold(
    ctx: Context, site: BatchNormSite, mean: torch.Tensor, std: torch.Tensor
) -> StandardizationPlacement:
    means, stds = mean.tolist(), std.tolist()
    plan = plan_forward(ctx, site)
    if isinstance(plan, Refusal):
        return StandardizationPlacement(means, stds, None, reason=plan.message)
    scale, _ = bn_affine(site.running_mean, site.running_var, site.weight, site.bias, site.eps)
    template = stat_flags(
        FoldEntry(NODE_NAME, "standardization", len(means), "refused"), site, scale
    )
    entry = try_fold(ctx, site, [(site, plan)], None, template)
    if entry.status != "folded":
        return StandardizationPlacement(means, stds, None, reason=str(entry.reason))
    return StandardizationPlacement(means, stds, str(plan.layer_node.target), error=entry.error)


def _as_batchnorm(mean: torch.Tensor, std: torch.Tensor, sample_dims: int) -> _BatchNorm:
    """A frozen BatchNorm computing exactly ``(x - mean) / std`` (eps 0, no affine)."""
    cls = {1: nn.BatchNorm1d, 2: nn.BatchNorm1d, 3: nn.BatchNorm2d, 4: nn.BatchNorm3d}[sample_dims]
    bn = cls(len(mean), eps=0.0, affine=False)
    bn.running_mean = mean.clone()
    bn.running_var = std.double().square().float()
    return bn.eval()


def _short(values: list[float]) -> str:
    shown = ", ".join(f"{v:.6g}" for v in values[:8])
    return f"[{shown}{', ...' if len(values) > 8 else ''}]"

"""Per-fold verification: the folded site against a float64 oracle of the unfolded site.

A *site* is the part of the graph a fold rewrites: layer -> rearrangements -> BN
(backward) or BN -> rearrangements -> layer (forward). Its input is the value
recorded at that point when the unfolded model ran on the example inputs. Three
versions of the site are evaluated on it:

- oracle: the unfolded site in float64 (layer parameters and BN statistics cast);
- baseline: the unfolded site in the layer's dtype (its own rounding error);
- folded: the candidate folded layer in the layer's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call
from torch.fx.node import Node

from training.folding.math import F64, relative_error
from training.folding.plan import BatchNormSite, Context, Plan, run_chain


@dataclass(frozen=True)
class SiteCheck:
    """The folded and the unfolded site's errors against the float64 oracle."""

    error: float
    baseline_error: float | None  # None when not needed (see ``check_site``)


def _batch_norm(site: BatchNormSite, x: Tensor, dtype: torch.dtype | None) -> Tensor:
    def cast(t: Tensor | None) -> Tensor | None:
        # dtype None: the tensors as the model holds them (the baseline).
        return None if t is None else t.detach().to(dtype or t.dtype)

    mean, var = cast(site.running_mean), cast(site.running_var)
    return F.batch_norm(x, mean, var, cast(site.weight), cast(site.bias), False, 0.0, site.eps)


def _layer(plan: Plan, x: Tensor, params: dict[str, Tensor] | None) -> Tensor:
    return functional_call(plan.layer, params, (x,)) if params else plan.layer(x)


def check_site(
    ctx: Context,
    site: BatchNormSite,
    plan: Plan,
    weight: Tensor,
    bias: Tensor,
    *,
    original64: dict[str, Tensor],
    tolerance: float | None = None,
) -> SiteCheck:
    """Evaluate the site with the candidate folded ``weight``/``bias`` (the layer is untouched).

    The baseline (unfolded site in the layer's dtype) only matters for the default
    tolerance of a fold that misses 64 ulps, so it is computed only then (it costs
    one more layer evaluation per site); otherwise ``baseline_error`` is None.
    ``original64`` holds the layer's current parameters in float64 (the caller
    computed the fold from them, so they are not cast twice).
    """
    oracle_params = original64
    folded_params = {"weight": weight, "bias": bias}
    with torch.no_grad():
        if plan.direction == "backward":
            data = plan.layer_node.args[0]
            assert isinstance(data, Node)
            x = ctx.env[data.name]
            first = plan.layer_node

            def unfolded(
                v: Tensor, dtype: torch.dtype | None, p: dict[str, Tensor] | None
            ) -> Tensor:
                y = run_chain(ctx, plan.chain, first, _layer(plan, v, p))
                return _batch_norm(site, y, dtype)

            folded = run_chain(ctx, plan.chain, first, _layer(plan, x, folded_params))
        else:
            x = ctx.env[site.input.name]

            def unfolded(
                v: Tensor, dtype: torch.dtype | None, p: dict[str, Tensor] | None
            ) -> Tensor:
                y = run_chain(ctx, plan.chain, site.node, _batch_norm(site, v, dtype))
                return _layer(plan, y, p)

            folded = _layer(plan, run_chain(ctx, plan.chain, site.node, x), folded_params)
        oracle = unfolded(x.to(F64), F64, oracle_params)
        error = relative_error(folded, oracle)
        if tolerance is not None or error <= default_tolerance(weight.dtype, 0.0):
            return SiteCheck(error, None)
        baseline = unfolded(x, None, None)
    return SiteCheck(error, relative_error(baseline, oracle))


def default_tolerance(dtype: torch.dtype, baseline_error: float | None) -> float:
    """64 ulps of ``dtype``, or 4x the unfolded site's own error if that is larger.

    float32: 7.6e-6, so that each fold stays below the 1e-5 whole-model bound;
    float16/bfloat16 are judged against what the unfolded layer loses anyway.
    """
    return max(64 * torch.finfo(dtype).eps, 4 * (baseline_error or 0.0))

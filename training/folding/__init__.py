"""Fold BatchNorm into neighbouring Linear/Conv/ConvTranspose layers; prove each fold.

Every refusal is explained in the report.

Public API::

    from training.folding import fold_batchnorm, FoldResult, FoldReport

    result = fold_batchnorm(model.eval(), example_inputs)
    result.model                 # torch.fx.GraphModule, BN folded where provably exact
    result.report.summary()      # {bn_total, folded, refused, max_relative_error, entries}

Modules: ``math`` (pure float64 fold arithmetic), ``graph`` (torch.fx tracing and
node classification), ``plan`` (which fold applies, or why none does), ``concat``
(a BN after a concat, split over the producers), ``site`` (per-fold verification
against a float64 oracle), ``apply`` (all-or-nothing fold of a plan), ``report``
(entries, JSON, table), ``api`` (``fold_batchnorm``). Bad input raises
``FoldingError``, which is both a ``ValueError`` and a ``training.errors.UsageError``.
"""

from __future__ import annotations

from training.folding.api import FoldResult, fold_batchnorm
from training.folding.errors import FoldingError
from training.folding.report import REASONS, FoldEntry, FoldReport, NotFoldable

__all__ = [
    "REASONS",
    "FoldEntry",
    "FoldReport",
    "FoldResult",
    "FoldingError",
    "NotFoldable",
    "fold_batchnorm",
]

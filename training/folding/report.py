"""What folding did: one ``FoldEntry`` per BatchNorm call, JSON and a table.

Counts (``bn_total``, ``folded``, ``refused``) cover BatchNorm only.
LayerNorm/GroupNorm/InstanceNorm/RMSNorm calls are listed separately in
``not_foldable``: they normalise with statistics of the sample itself, so there
is nothing constant to fold, and counting them as "refused" BNs would make
``refused`` disagree with the BatchNorm nodes left in the exported graph.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["folded", "refused"]

# Every ``reason_code`` a refused entry can carry, with what it means.
REASONS: dict[str, str] = {
    "batch_statistics": "BN normalises with batch statistics (track_running_stats=False)",
    "non_constant_statistics": "F.batch_norm statistics are computed in the graph",
    "no_layer": "no Linear/Conv/ConvTranspose directly before or after the BN",
    "fan_out": "the values to rescale also feed another consumer",
    "model_output": "the values to rescale are also a model output",
    "shared_module": "the layer is called at more than one place",
    "tied_weight": "the layer's weight is shared with another module or use",
    "axis_mismatch": "BN's channel axis is not the layer's feature axis",
    "nonlinearity": "a non-linearity sits between the BN and the next layer",
    "zero_padding": "forward fold into a zero-padded conv (the padding would shift)",
    "conv_transpose_stride": "forward fold into a strided ConvTranspose",
    "conv_transpose_border": "forward fold into a ConvTranspose whose borders see fewer taps",
    "dtype_range": "the folded parameters overflow the layer's dtype",
    "verification_failed": "the fold missed its tolerance against the float64 oracle: rolled back",
}


@dataclass(frozen=True)
class FoldEntry:
    """One BatchNorm call site and what happened to it.

    ``error`` is the fold's measured error at its site: max |folded - oracle| /
    max |oracle|, the oracle being the unfolded site computed in float64;
    ``baseline_error`` is the same measure for the *unfolded* site in the layer's
    dtype (what the layer's own rounding costs anyway), computed only when the
    default tolerance needs it. ``reason_code`` is one of ``REASONS`` (stable, for
    scripts); ``reason`` is a sentence for humans naming both directions tried.
    Flags: ``near_zero_variance`` (running_var < eps; channels listed),
    ``zero_gamma``, ``exceeds_float16_range`` (fits the layer's dtype, not fp16).
    ``target`` names the layer folded into; a BN after a concat is split over the
    producers, listed comma-separated (``error`` is then the worst part's).
    """

    name: str
    kind: str
    num_features: int
    status: Status
    direction: Literal["backward", "forward"] | None = None
    target: str | None = None
    target_kind: str | None = None
    reason_code: str | None = None
    reason: str | None = None
    error: float | None = None
    baseline_error: float | None = None
    tolerance: float | None = None
    dtype: str | None = None
    flags: list[str] = field(default_factory=list)
    near_zero_variance_channels: list[int] = field(default_factory=list)
    max_abs_scale: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (non-finite floats become strings)."""
        return {key: _jsonable(value) for key, value in asdict(self).items()}


@dataclass(frozen=True)
class NotFoldable:
    """A normalisation layer that is not a BatchNorm (listed, never folded)."""

    name: str
    kind: str
    reason: str = "normalises with per-sample statistics: not a BatchNorm, nothing to fold"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)


@dataclass(frozen=True)
class FoldReport:
    """All entries, the not-foldable norms and the whole-model check.

    ``model_relative_error`` is max |folded - original| / max |original| of the
    model outputs on the example inputs, both run in the model's own dtype.
    """

    entries: list[FoldEntry]
    not_foldable: list[NotFoldable] = field(default_factory=list)
    model_relative_error: float = 0.0

    @property
    def bn_total(self) -> int:
        """Number of BatchNorm call sites found."""
        return len(self.entries)

    @property
    def folded(self) -> int:
        """Number of BatchNorm call sites folded away."""
        return sum(e.status == "folded" for e in self.entries)

    @property
    def refused(self) -> int:
        """Number of BatchNorm call sites left in the model."""
        return sum(e.status == "refused" for e in self.entries)

    def refused_by_reason(self) -> dict[str, int]:
        """``reason_code -> count`` over refused entries."""
        return dict(Counter(str(e.reason_code) for e in self.entries if e.status == "refused"))

    def max_fold_error(self) -> float:
        """The largest per-fold site error (0 if nothing was folded)."""
        return max((e.error or 0.0 for e in self.entries if e.status == "folded"), default=0.0)

    def summary(self) -> dict[str, Any]:
        """The short form stored in the model card (``service.card.FoldSummary``).

        ``max_relative_error`` is the whole-model error ``model_relative_error``.
        """
        return {
            "bn_total": self.bn_total,
            "folded": self.folded,
            "refused": self.refused,
            "max_relative_error": _finite(self.model_relative_error),
            "entries": [e.to_dict() for e in self.entries],
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-serialisable."""
        return {
            **self.summary(),
            "refused_by_reason": self.refused_by_reason(),
            "max_fold_error": self.max_fold_error(),
            "model_relative_error": _jsonable(self.model_relative_error),
            "not_foldable": [n.to_dict() for n in self.not_foldable],
        }

    def to_json(self, indent: int | None = 2) -> str:
        """``to_dict()`` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def table_rows(self) -> list[tuple[str, ...]]:
        """One row of strings per entry (and per not-foldable norm), for any renderer."""
        rows: list[tuple[str, ...]] = []
        for e in self.entries:
            where = f"{e.direction} -> {e.target}" if e.status == "folded" else "-"
            error = f"{e.error:.2e}" if e.error is not None else "-"
            note = e.reason if e.status == "refused" else ", ".join(e.flags)
            rows.append((e.name, e.kind, e.status, where, error, note or ""))
        for n in self.not_foldable:
            rows.append((n.name, n.kind, "not foldable", "-", "-", n.reason))
        return rows

    def render(self, *, color: bool = False, width: int = 160) -> str:
        """The report as a table (rich if installed, else plain text)."""
        headers = ("BatchNorm", "kind", "status", "folded into", "error", "reason / flags")
        footer = (
            f"{self.folded}/{self.bn_total} folded, {self.refused} refused; "
            f"whole-model relative error {self.model_relative_error:.2e}"
        )
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:  # rich is a train extra; keep the report usable without it
            return _plain(headers, self.table_rows()) + "\n" + footer
        table = Table(*headers, title="BatchNorm folding", title_justify="left")
        for row in self.table_rows():
            style = {"folded": "green", "refused": "red"}.get(row[2], "yellow")
            table.add_row(*row[:2], f"[{style}]{row[2]}[/{style}]", *row[3:])
        console = Console(width=width, force_terminal=color, no_color=not color)
        with console.capture() as capture:
            console.print(table)
            console.print(footer)
        return capture.get()


def _plain(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [headers, *rows]
    ]
    return "\n".join(lines)


def _finite(value: float) -> float:
    # The card stores a float: report an overflowing error as the largest float, not inf.
    return value if math.isfinite(value) else 1.7976931348623157e308


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value

"""Terminal output of the sub-commands: lines, key/value tables and training progress.

Everything goes to stdout, and nothing at all with ``--quiet`` (``set_quiet``;
errors go to stderr from ``training.cli``). Training progress is a live bar per
epoch on a terminal and one line per epoch otherwise (CI logs), both with loss,
accuracy, learning rate and time.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import TextIO

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

console = Console(highlight=False)


def set_quiet(quiet: bool) -> None:
    """Silence (or restore) every line and table of this module."""
    console.quiet = quiet


def say(text: str) -> None:
    """Print ``text`` as it is (no markup, no wrapping, ANSI colours kept), unless quiet."""
    if not console.quiet:
        print(text, flush=True)


def print_table(title: str, rows: Iterable[tuple[str, object]]) -> None:
    """Print ``rows`` as a two-column table under ``title``, unless quiet."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    for key, value in rows:
        table.add_row(key, _format(value))
    console.print(table)


def _format(value: object) -> str:
    if isinstance(value, bool):
        return "[green]yes[/green]" if value else "[red]NO[/red]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def seconds(value: float) -> str:
    """A duration as every summary states it (one decimal), so figures compare as text."""
    return f"{value:.1f} s"


class EpochProgress:
    """Progress of a training run: ``start_epoch``, ``step`` per batch, ``end_epoch``.

    ``stream`` defaults to stdout; on a terminal each epoch gets a live bar
    (running loss, accuracy and learning rate), cleared when the epoch's line
    is printed. Quiet mode prints nothing.
    """

    refresh_s = 0.1  # the bar redraws at most this often

    def __init__(self, epochs: int, steps: int, stream: TextIO | None = None) -> None:
        self.epochs, self.steps = epochs, steps
        self.stream = stream if stream is not None else sys.stdout
        self.live = self.stream.isatty() and not console.quiet
        self._bar: tqdm | None = None
        self._sums = [0.0, 0.0, 0.0]  # loss sum, correct, count of the running epoch
        self._epoch_start = time.perf_counter()

    def start_epoch(self, epoch: int) -> None:
        """Open the bar of ``epoch`` (1-based)."""
        self._sums = [0.0, 0.0, 0.0]
        self._epoch_start = time.perf_counter()
        if self.live:
            self._bar = tqdm(
                total=self.steps,
                desc=f"epoch {epoch}/{self.epochs}",
                unit="batch",
                leave=False,
                file=self.stream,
                dynamic_ncols=True,
                mininterval=self.refresh_s,
            )

    def step(self, loss: float, correct: float, count: int, lr: float) -> None:
        """One optimizer step: ``loss`` is the batch mean, ``correct`` of ``count`` right."""
        sums = self._sums
        sums[0], sums[1], sums[2] = sums[0] + loss * count, sums[1] + correct, sums[2] + count
        if self._bar is not None:
            self._bar.set_postfix_str(
                f"loss {sums[0] / sums[2]:.4f}  acc {sums[1] / sums[2]:.2%}  lr {lr:.2e}",
                refresh=False,
            )
            self._bar.update(1)

    def end_epoch(self, row: dict[str, float]) -> None:
        """Close the bar and print the epoch's line from its ``metrics.jsonl`` row."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if not console.quiet:
            line = epoch_line(row, self.epochs, time.perf_counter() - self._epoch_start)
            print(line, file=self.stream, flush=True)


def epoch_line(row: dict[str, float], epochs: int, epoch_seconds: float) -> str:
    """``epoch  3/60  loss ... acc ...  val loss ... val acc ...  lr ...  0.11 s (1.2 s)``."""
    width = len(str(epochs))
    return (
        f"epoch {int(row['epoch']):{width}d}/{epochs}  "
        f"loss {row['train_loss']:.4f}  acc {row['train_acc']:7.2%}  "
        f"val loss {row['val_loss']:.4f}  val acc {row['val_acc']:7.2%}  "
        f"lr {row['lr']:.2e}  {epoch_seconds:.2f} s (total {row['time_s']:.1f} s)"
    )

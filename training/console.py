"""Terminal output shared by the sub-commands: key/value summary tables."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.table import Table

console = Console(highlight=False)


def print_table(title: str, rows: Iterable[tuple[str, object]]) -> None:
    """Print ``rows`` as a two-column table under ``title``."""
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

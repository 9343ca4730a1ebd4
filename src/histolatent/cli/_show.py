"""Showing results on the terminal: the one way the CLI prints a table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def print_table(rows: Iterable[Sequence[Any]], columns: Sequence[str], *, title: str | None = None,
                header: bool = True) -> None:
    """Print ``rows`` (one value per column, shown with ``str``) as a rich table on stdout."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=header)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(str(v) for v in row))
    Console().print(table)

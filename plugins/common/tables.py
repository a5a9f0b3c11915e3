"""Rows of results as a rich table rendered to text (for ``results.txt`` files and the log)."""

from __future__ import annotations

import io
from typing import Any, Callable, Sequence


def rows_table(rows: Sequence[dict[str, Any]], title: str, number: str = ".3f", width: int = 160,
               cell: Callable[[Any], str | None] | None = None) -> str:
    """``rows`` (dicts sharing their keys) as a rich table.

    Each value is shown as ``cell(value)`` when that gives a string (a plugin's own format, e.g. an
    accuracy with its interval), else: None as ``—``, floats with ``number``, anything else as ``str``.
    """
    from rich.console import Console
    from rich.table import Table

    def text(value: Any) -> str:
        custom = cell(value) if cell is not None else None
        if custom is not None:
            return custom
        if value is None:
            return "—"
        return format(value, number) if isinstance(value, float) else str(value)

    table = Table(title=title)
    columns = list(rows[0]) if rows else []
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[text(row.get(c)) for c in columns])
    console = Console(file=io.StringIO(), width=width)
    console.print(table)
    return console.file.getvalue()

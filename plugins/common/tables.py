"""Rows of results as a rich table rendered to text (for ``results.txt`` files and the log)."""

from __future__ import annotations

import io
from typing import Any, Sequence


def rows_table(rows: Sequence[dict[str, Any]], title: str, number: str = ".3f", width: int = 160) -> str:
    """``rows`` (dicts sharing their keys) as a rich table; floats formatted with ``number``, None as ``—``."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    columns = list(rows[0]) if rows else []
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*["—" if row.get(c) is None else format(row[c], number) if isinstance(row[c], float)
                        else str(row[c]) for c in columns])
    console = Console(file=io.StringIO(), width=width)
    console.print(table)
    return console.file.getvalue()

"""Terminal tables that never cut a name (`fedfleet profiles`, usable by every listing).

rich shrinks a table to the console and ends cut cells with an ellipsis ("phone-fla..."). Here
the key columns get ``min_width`` = their longest cell and never wrap; other columns may wrap.
On a terminal the table fits the terminal's width as far as the key columns allow; elsewhere (a
pipe, a log) the console is as wide as the table's natural width, so nothing is cut or wrapped.
"""

from __future__ import annotations

import sys
from typing import IO, Any


def keep_whole(table: Any, *columns: int) -> None:
    """Columns ``columns`` (indices) of a rich ``Table`` are never cut or wrapped; the others
    wrap (fold) rather than end in an ellipsis when the terminal is narrow."""
    for col in table.columns:
        col.overflow = "fold"
    for i in columns:
        col = table.columns[i]
        cells = [str(c) for c in col.cells]
        col.min_width = max([len(str(col.header)), *map(len, cells)], default=1)
        col.no_wrap = True
        col.overflow = "fold"


def print_table(table: Any, file: IO[str] | None = None) -> None:
    from rich.console import Console

    out = file if file is not None else sys.stdout
    try:
        tty = bool(out.isatty())
    except (AttributeError, ValueError):
        tty = False
    if tty:
        Console(file=out).print(table)
        return
    wide = Console(file=out, width=10_000)
    width = wide.measure(table).maximum
    Console(file=out, width=max(40, width)).print(table)

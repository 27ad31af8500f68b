"""Aligned tables like Go's ``tabwriter``, which ctr prints with."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

__all__ = ["print_table"]


def print_table(
    rows: Sequence[Sequence[str]],
    *,
    padding: int = 1,
    minwidth: int = 1,
    out: TextIO | None = None,
) -> None:
    """Print rows with each column padded to its widest cell plus ``padding`` spaces."""
    out = out or sys.stdout
    if not rows:
        return
    ncols = max(len(r) for r in rows)
    widths = [minwidth] * ncols
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell) + padding)
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        out.write("".join(cells).rstrip() + "\n")

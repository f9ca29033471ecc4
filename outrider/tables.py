"""Plain-text tables for the CLI: left-aligned columns, two spaces apart, under a header."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The table; the last column is not padded (it may be long)."""
    table = [tuple(headers), *(tuple(row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers) - 1)]
    lines = [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]])
        for row in table
    ]
    return "\n".join(line.rstrip() for line in lines)


def when(value: datetime | None) -> str:
    """A UTC timestamp to the second, or '-'."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else "-"


def age(seconds: float | None) -> str:
    """A duration, short: 45s, 12m, 3h, 2d; '-' for none."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"

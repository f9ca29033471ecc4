"""Tables in a PDF: ruled ones by pdfplumber, borderless ones by the alignment of their cells.

Ruled tables (drawn lines): pdfplumber (MIT, on pdfminer.six) finds them on the pages PDFium
saw draw a grid, at most `TABLE_PAGES_MAX` pages a document (pdfminer costs about 0.2 s a
page). The lines PDFium read inside a table's box give way to the table.

Borderless tables: at least `MIN_ROWS` consecutive lines of two or more cells (runs of text
split by wide gaps, worker/extract/pdf_lines.py) whose cells fall into the same columns (each
cell overlaps exactly one column's extent), with no wider gap between baselines than twice the
font size, and no dot leaders (a table of contents). A list item's marker is not a cell;
lines in a fixed-pitch font (code, listings) are never cells.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from worker.extract.docblocks import squash
from worker.extract.pdf_lines import Cell, Line

TABLE_PAGES_MAX = 100
_LEADER = re.compile(r"(?:\. ?){5,}")
MIN_ROWS = 3
Rows = list[list[str]]


@dataclass
class Table:
    """A ruled table's box in PDF space (y grows upwards) and its rows."""

    top: float
    bottom: float
    x0: float
    x1: float
    rows: Rows

    def holds(self, line: Line) -> bool:
        inside = self.bottom - 1 <= line.baseline <= self.top + 1
        return inside and self.x0 - 1 <= line.left <= self.x1


def ruled_tables(raw: bytes, wanted: list[tuple[int, float]]) -> dict[int, list[Table]]:
    """Ruled tables by page number, for the (page number, height) pairs `wanted`."""
    if not wanted:
        return {}
    import pdfplumber  # pdfminer.six is slow to import and to run: only for ruled pages

    found: dict[int, list[Table]] = {}
    try:
        with pdfplumber.open(io.BytesIO(raw)) as document:
            for number, height in wanted[:TABLE_PAGES_MAX]:
                found[number] = _page_tables(document.pages[number], height)
    except Exception:  # tables are a bonus: the text stands without them
        return found
    return found


def _page_tables(page: Any, height: float) -> list[Table]:
    tables = []
    for table in page.find_tables():
        rows = [[squash(cell or "") for cell in row] for row in table.extract()]
        rows = [row for row in rows if any(row)]
        if len(rows) < 2 or max(len(row) for row in rows) < 2:
            continue  # a framed paragraph, not a table
        x0, top, x1, bottom = table.bbox
        tables.append(Table(height - top, height - bottom, x0, x1, rows))
    return tables


Marker = Callable[[str], object]


def _cells(line: Line, is_item: Marker) -> list[Cell]:
    # A listing's spaces are its own (psql's tables are text, with their own bars).
    return [] if line.monospace or is_item(line.text) else line.cells


def _columns_of(cells: list[Cell], columns: list[list[float]]) -> list[int] | None:
    """The column of each cell, or None if a cell does not fall into exactly one."""
    found: list[int] = []
    for cell in cells:
        hits = [n for n, (lo, hi) in enumerate(columns) if cell.left < hi and cell.right > lo]
        if len(hits) != 1 or (found and hits[0] <= found[-1]):
            return None
        found.append(hits[0])
    return found


def _aligned_run(lines: list[Line], start: int, is_item: Marker) -> tuple[int, Rows] | None:
    """The borderless table starting at `lines[start]`: (its end, its rows), or None."""
    first = _cells(lines[start], is_item)
    if len(first) < 2:
        return None
    columns = [[c.left, c.right] for c in first]
    rows = [[c.text for c in first]]
    end = start + 1
    while end < len(lines):
        line, before = lines[end], lines[end - 1]
        cells = _cells(line, is_item)
        gap = before.baseline - line.baseline
        placed = _columns_of(cells, columns) if len(cells) >= 2 else None
        if placed is None or not 0 < gap <= 2.5 * max(line.size, 1):
            break
        row = [""] * len(columns)
        for cell, column in zip(cells, placed, strict=True):
            row[column] = cell.text
            columns[column] = [
                min(columns[column][0], cell.left),
                max(columns[column][1], cell.right),
            ]
        rows.append(row)
        end += 1
    if len(rows) < MIN_ROWS or any(_LEADER.search(cell) for row in rows for cell in row):
        return None  # a table of contents' dot leaders are not columns
    return end, rows


def with_tables(lines: list[Line], ruled: list[Table], is_item: Marker) -> Iterator[Line | Rows]:
    """The page's lines with its tables in their place: each ruled table instead of the lines
    in its box, each borderless table instead of its lines."""
    placed: set[int] = set()
    index = 0
    while index < len(lines):
        line = lines[index]
        holder = next((n for n, t in enumerate(ruled) if t.holds(line)), None)
        if holder is not None:
            if holder not in placed:
                placed.add(holder)
                yield ruled[holder].rows
            index += 1
        elif (run := _aligned_run(lines, index, is_item)) is not None:
            index, rows = run
            yield rows
        else:
            yield line
            index += 1

"""PDF to blocks: PDFium (pypdfium2, Apache-2.0/BSD) reads the text, pdfplumber (MIT) the tables.

Why these: PDFium is Chrome's PDF engine, robust on broken files, and reads text about 50 times
faster than pdfminer.six (a 22-page manual: 77 ms against 3.7 s; pdfplumber's text 5.3 s).
PyMuPDF would be as fast but is AGPL. pdfminer.six, through pdfplumber, is only asked for the
tables of pages that draw lines (ruled tables), at most `TABLE_PAGES_MAX` pages per document.

How the text becomes blocks (PDF has no structure of its own, only placed glyphs): PDFium gives
the characters of each page in reading order, with line breaks; each line's font size and
baseline come from its first visible character. The body size is the commonest size; lines
clearly larger are headings (the largest size is level 1). A new paragraph starts where the gap
between baselines is wider than the document's usual leading for that size, after a short line
that ends a sentence, where the text jumps up (a new column), at a heading, or at a bullet or
number (a list item; indented lines continue it). Lines set in a fixed-pitch font from end to
end are a listing: a fenced code block, indented as on the page. Lines inside a
ruled table are replaced by the table. Tables without ruling lines stay text.

Unreadable: a password (`encrypted`), a file PDFium cannot load (`corrupt`), no text at all on
pages that hold images (`image_only`: a scan; no OCR is done) or on none (`empty`), more pages
than the cap (`too_many_pages`).
"""

from __future__ import annotations

import ctypes
import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from worker.extract.docblocks import DocBlock, DocumentError
from worker.extract.pdf_lines import Line, read_page
from worker.extract.pdf_tables import Table, ruled_tables, with_tables

HEADING_RATIO = 1.15
LINKS_MAX = 5000
_BULLETS = "\u2022\u25e6\u25aa\u25ab\u2023\u2043\u25cf\u25cb\u25a0\u25a1\u27a2\u25ba\uf000-\uf0ff"
_BULLET = re.compile(rf"^([{_BULLETS}]|[-\u2013*](?=\s))\s*")  # \uf0xx: symbol fonts' bullets
_NUMBER = re.compile(r"^(\d{1,3}|[a-zA-Z])[.)]\s+")
# PDFium is not thread-safe; in the parse pool each process is single-threaded anyway.
_LOCK = threading.Lock()
_SENTENCE_END = frozenset('.!?:"\u201d')


def _open(raw: bytes) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(raw)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == pdfium_c.FPDF_ERR_PASSWORD:
            raise DocumentError(
                "encrypted", "The PDF is encrypted (it needs a password): cannot read it."
            ) from None
        raise DocumentError("corrupt", f"The PDF is corrupt: {exc}") from None


def _shapes(page: Any, shapes: Counter[str], depth: int = 0) -> None:
    left, bottom = ctypes.c_float(), ctypes.c_float()
    right, top = ctypes.c_float(), ctypes.c_float()
    refs = [ctypes.byref(v) for v in (left, bottom, right, top)]
    count = pdfium_c.FPDFFormObj_CountObjects if depth else pdfium_c.FPDFPage_CountObjects
    get = pdfium_c.FPDFFormObj_GetObject if depth else pdfium_c.FPDFPage_GetObject
    for index in range(count(page)):
        obj = get(page, index)
        kind = pdfium_c.FPDFPageObj_GetType(obj)
        if kind == pdfium_c.FPDF_PAGEOBJ_IMAGE:
            shapes["image"] += 1
        elif kind == pdfium_c.FPDF_PAGEOBJ_FORM and depth < 2:
            _shapes(obj, shapes, depth + 1)
        elif kind == pdfium_c.FPDF_PAGEOBJ_PATH and pdfium_c.FPDFPageObj_GetBounds(obj, *refs):
            width, height = right.value - left.value, top.value - bottom.value
            shapes["h" if height < 3 <= width else "v" if width < 3 <= height else "box"] += 1


def _ruled_and_images(page: pdfium.PdfPage) -> tuple[bool, bool]:
    """Whether the page draws a grid of lines (maybe a ruled table), and holds images (raw
    calls: pypdfium2's object wrappers cost more than the page's text)."""
    shapes: Counter[str] = Counter()
    _shapes(page.raw, shapes)
    ruled = (shapes["h"] >= 2 and shapes["v"] >= 2) or shapes["box"] >= 4
    return ruled, shapes["image"] > 0


@dataclass
class _Page:
    lines: list[Line]
    height: float
    ruled: bool
    has_images: bool
    links: list[str]


def _read_pages(raw: bytes, max_pages: int) -> tuple[list[_Page], dict[str, Any]]:
    with _LOCK:
        pdf = _open(raw)
        try:
            total = len(pdf)
            if total > max_pages:
                raise DocumentError(
                    "too_many_pages", f"The PDF has {total} pages; the limit is {max_pages}.", total
                )
            meta = pdf.get_metadata_dict(skip_empty=True)
            pages = []
            for number in range(total):
                page = pdf[number]
                ruled, images = _ruled_and_images(page)
                lines, links = read_page(pdf.raw, page)
                pages.append(_Page(lines, page.get_height(), ruled, images, links))
                page.close()
        finally:
            pdf.close()
    info = {"title": meta.get("Title") or None, "author": meta.get("Author") or None}
    return pages, {**info, "pages": total}


@dataclass
class _Style:
    """What the whole document says about its typography."""

    levels: dict[float, int]  # font size -> heading level
    leading: dict[float, float]  # font size -> the commonest distance between baselines


def _style(pages: list[_Page]) -> _Style:
    weights: Counter[float] = Counter()
    steps: dict[float, Counter[float]] = {}
    for page in pages:
        for before, line in zip([None, *page.lines], page.lines, strict=False):
            weights[line.size] += len(line.text)
            if before is not None and before.size == line.size:
                step = round(before.baseline - line.baseline, 0)
                if step > 0:
                    steps.setdefault(line.size, Counter())[step] += 1
    body = weights.most_common(1)[0][0] if weights else 0.0
    larger = sorted({s for s in weights if s >= body * HEADING_RATIO}, reverse=True)
    leading = {size: counts.most_common(1)[0][0] for size, counts in steps.items()}
    return _Style({size: min(rank + 1, 6) for rank, size in enumerate(larger)}, leading)


def _measures(lines: list[Line]) -> dict[int, float]:
    """The right edge of the text, by where lines start (columns start at different places)."""
    edges: dict[int, float] = {}
    for line in lines:
        key = round(line.left / 5)
        edges[key] = max(edges.get(key, 0.0), line.right)
    return edges


def _list_marker(text: str) -> tuple[bool, str] | None:
    """(ordered, text without its marker) for a list item's first line."""
    if match := _BULLET.match(text):
        return False, text[match.end() :]
    if match := _NUMBER.match(text):
        return True, text[match.end() :]
    return None


class _Builder:
    """Groups a page's lines into blocks."""

    def __init__(self, style: _Style, measures: dict[int, float]) -> None:
        self.style = style
        self.measures = measures
        self.blocks: list[DocBlock] = []
        self.last: Line | None = None
        self.item_left = 0.0
        self.code_left = 0.0

    def _ended(self, last: Line, line: Line) -> bool:
        """Whether `last` ended its paragraph: a wider gap than the leading, or a short line
        that ends a sentence."""
        leading = self.style.leading.get(line.size, line.size * 1.2)
        if last.baseline - line.baseline > max(leading * 1.25, line.size * 1.05):
            return True
        measure = self.measures.get(round(last.left / 5), last.right)
        return last.text[-1:] in '.!?:"”' and last.right < measure - 2 * last.size

    def _continues(self, line: Line, block: DocBlock) -> bool:
        last = self.last
        if last is None or abs(line.size - last.size) > 1:
            return False
        if line.baseline > last.baseline + 1:  # up: a new column or page
            return block.kind == "paragraph" and last.text[-1:] not in _SENTENCE_END
        if block.kind == "heading":
            return self.style.levels.get(line.size) == block.level and not self._ended(last, line)
        if self._ended(last, line):
            return False
        if block.kind == "item":
            return line.left > self.item_left + 2
        return block.kind == "paragraph"

    def _code(self, line: Line) -> None:
        """A line of a listing: kept as a line, indented as it was (in characters)."""
        current = self.blocks[-1] if self.blocks else None
        step = self.last.baseline - line.baseline if self.last is not None else -1.0
        near = 0 < step <= 2.5 * max(line.size, 1)
        if current is None or current.kind != "code" or not near:
            self.code_left = line.left
            self.blocks.append(DocBlock("code", line.text))
        else:
            indent = max(round((line.left - self.code_left) / (0.6 * max(line.size, 1))), 0)
            current.text += "\n" + " " * indent + line.text
        self.last = line

    def add(self, line: Line) -> None:
        if line.monospace:
            self._code(line)
            return
        level = self.style.levels.get(line.size) if len(line.text) < 200 else None
        marker = _list_marker(line.text) if level is None else None  # "1. Intro" may head
        current = self.blocks[-1] if self.blocks else None
        joins = marker is None and (level is None or getattr(current, "kind", "") == "heading")
        if joins and current is not None and self._continues(line, current):
            current.text = _join(current.text, line.text)
            self.last = line
            return
        if level is not None:
            self.blocks.append(DocBlock("heading", line.text, level=level))
        elif marker is not None:
            self.item_left = line.left
            self.blocks.append(DocBlock("item", marker[1], ordered=marker[0]))
        else:
            self.blocks.append(DocBlock("paragraph", line.text))
        self.last = line

    def table(self, rows: list[list[str]]) -> None:
        self.blocks.append(DocBlock("table", rows=rows))
        self.last = None


def _join(before: str, after: str) -> str:
    if before.endswith("-") and after[:1].islower() and before[-2:-1].isalpha():
        return before[:-1] + after  # a word hyphenated at the line's end
    return f"{before} {after}"


def _blocks(pages: list[_Page], ruled: dict[int, list[Table]]) -> list[DocBlock]:
    builder = _Builder(_style(pages), {})
    for number, page in enumerate(pages):
        builder.measures = _measures(page.lines)
        for item in with_tables(page.lines, ruled.get(number, []), _list_marker):
            if isinstance(item, Line):
                builder.add(item)
            else:
                builder.table(item)
    return builder.blocks


def read_pdf(raw: bytes, max_pages: int) -> tuple[list[DocBlock], dict[str, Any]]:
    """The blocks and metadata (title, author, pages, and `links`: the URLs its link
    annotations and its text point to, first seen first) of a PDF; raises DocumentError."""
    pages, meta = _read_pages(raw, max_pages)
    if not any(page.lines for page in pages):
        if any(page.has_images for page in pages):
            raise DocumentError(
                "image_only", "The PDF has no text, only images (a scan?): no OCR is done."
            )
        raise DocumentError("empty", "The PDF has no text.")
    wanted = [(n, page.height) for n, page in enumerate(pages) if page.ruled]
    links = list(dict.fromkeys(url for page in pages for url in page.links))[:LINKS_MAX]
    return _blocks(pages, ruled_tables(raw, wanted)), {**meta, "links": links}

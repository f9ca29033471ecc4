"""A PDF page's text as lines, by PDFium: each line's text, size, baseline, extent and cells.

PDFium gives the characters in reading order with generated line breaks. A line's font size
and baseline are its first visible character's; its `cells` are its runs of text split where
the gap between two visible characters is wider than `CELL_GAP` font sizes (a space is about a
quarter of one), which is how a table without ruling lines shows (worker/extract/pdf_tables.py).
Not thread-safe (PDFium is not): the caller holds the document lock.
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass, field
from typing import Any

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

CELL_GAP = 1.0
FIXED_PITCH = 1  # PDF font descriptor flag
_MONO_NAME = re.compile(rb"courier|mono|consol|typewriter|cmtt|sfti|menlo|inconsolata", re.I)
_DROP = dict.fromkeys((2, 0xAD, 0xFFFE, 0))  # soft hyphens and PDFium's markers
_WORD = re.compile(r"\S+")


@dataclass
class Cell:
    """A run of a line's text between wide gaps."""

    left: float
    right: float
    text: str


@dataclass
class Line:
    """One line of a page."""

    text: str
    size: float
    baseline: float
    left: float
    right: float
    cells: list[Cell] = field(default_factory=list)
    monospace: bool = False  # its first and last characters' fonts are fixed-pitch (code)


def _origin(textpage: Any, index: int) -> tuple[float, float]:
    x, y = ctypes.c_double(), ctypes.c_double()
    pdfium_c.FPDFText_GetCharOrigin(textpage, index, ctypes.byref(x), ctypes.byref(y))
    return x.value, y.value


class _Box:
    """One reusable set of out-parameters for FPDFText_GetCharBox (called per word)."""

    def __init__(self, textpage: Any) -> None:
        self.textpage = textpage
        self.values = [ctypes.c_double() for _ in range(4)]  # left, right, bottom, top
        self.refs = [ctypes.byref(v) for v in self.values]

    def span(self, index: int) -> tuple[float, float]:
        pdfium_c.FPDFText_GetCharBox(self.textpage, index, *self.refs)
        return self.values[0].value, self.values[1].value


def _line(textpage: Any, box: _Box, text: str, offset: int) -> Line | None:
    """The line whose characters are `text`, the first at index `offset` (a word's box is
    read at its first and last character: PDFium inserts a space wherever text jumps)."""
    cells: list[Cell] = []
    first = last = -1
    gap = 0.0
    for match in _WORD.finditer(text):
        word = match.group().translate(_DROP)
        if not word:
            continue
        start, end = offset + match.start(), offset + match.end() - 1
        last = end
        if first < 0:
            first = start
            gap = CELL_GAP * max(pdfium_c.FPDFText_GetFontSize(textpage, start), 1.0)
        left, right = box.span(start)
        right = max(right, box.span(end)[1]) if end > start else right
        if cells and left - cells[-1].right <= gap:
            cells[-1].text += " " + word
            cells[-1].right = max(cells[-1].right, right)
        else:
            cells.append(Cell(left, right, word))
    if first < 0:
        return None
    x, y = _origin(textpage, first)
    size = round(pdfium_c.FPDFText_GetFontSize(textpage, first), 1)
    cells = [Cell(c.left, c.right, _text(c.text)) for c in cells]
    line_text = " ".join(c.text for c in cells)
    fixed = _fixed_pitch(textpage, first) and _fixed_pitch(textpage, last)
    return Line(line_text, size, y, x, cells[-1].right, cells, fixed)


def _fixed_pitch(textpage: Any, index: int) -> bool:
    """The font's descriptor says fixed-pitch, or its name does (the standard Courier has no
    descriptor; TeX's typewriter fonts do not set the flag)."""
    flags = ctypes.c_int()
    name = ctypes.create_string_buffer(128)
    pdfium_c.FPDFText_GetFontInfo(textpage, index, name, len(name), ctypes.byref(flags))
    return bool(flags.value & FIXED_PITCH) or bool(_MONO_NAME.search(name.value))


def _units(raw: Any, count: int) -> list[int]:
    """Every character of the page at once (one call instead of one per character): UTF-16
    code units, one per character index."""
    buffer = (ctypes.c_ushort * (count + 1))()
    pdfium_c.FPDFText_GetText(raw, 0, count, buffer)
    return list(buffer[:count])


def _text(units: str) -> str:
    # A character outside the BMP spans two indexes (a surrogate pair): join them.
    return units.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def read_page(document: Any, page: pdfium.PdfPage) -> tuple[list[Line], list[str]]:
    """The lines of `page`, in PDFium's reading order, and the URLs it links to."""
    textpage = page.get_textpage()
    raw = textpage.raw
    units = _units(raw, textpage.count_chars())
    text = "".join(map(chr, units)).replace("\r", " ")
    box = _Box(raw)
    lines: list[Line] = []
    offset = 0
    for part in text.split("\n"):
        if (line := _line(raw, box, part, offset)) is not None:
            lines.append(line)
        offset += len(part) + 1
    links = page_links(document, page, raw)
    textpage.close()
    return lines, links


def page_links(document: Any, page: pdfium.PdfPage, textpage_raw: Any | None = None) -> list[str]:
    """The URLs a page links to: its link annotations' URI actions, then URLs PDFium sees in
    its text."""
    urls: list[str] = []
    position = ctypes.c_int(0)
    link = pdfium_c.FPDF_LINK()
    while pdfium_c.FPDFLink_Enumerate(page.raw, ctypes.byref(position), ctypes.byref(link)):
        action = pdfium_c.FPDFLink_GetAction(link)
        if action and pdfium_c.FPDFAction_GetType(action) == pdfium_c.PDFACTION_URI:
            size = pdfium_c.FPDFAction_GetURIPath(document, action, None, 0)
            buffer = ctypes.create_string_buffer(size)
            pdfium_c.FPDFAction_GetURIPath(document, action, buffer, size)
            urls.append(buffer.value.decode("latin-1"))
    if textpage_raw is not None:
        urls.extend(_web_links(textpage_raw))
    return urls


def _web_links(textpage: Any) -> list[str]:
    links = pdfium_c.FPDFLink_LoadWebLinks(textpage)
    try:
        found = []
        for index in range(pdfium_c.FPDFLink_CountWebLinks(links)):
            size = pdfium_c.FPDFLink_GetURL(links, index, None, 0)
            buffer = (ctypes.c_ushort * size)()
            pdfium_c.FPDFLink_GetURL(links, index, buffer, size)
            found.append(_text("".join(map(chr, buffer[: size - 1]))))
        return found
    finally:
        pdfium_c.FPDFLink_CloseWebLinks(links)

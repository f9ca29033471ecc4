"""A document as blocks (headings, paragraphs, list items, tables, code) and its Markdown, text
and HTML.

PDF and DOCX readers (worker/extract/pdf.py, worker/extract/docx.py) produce these blocks; one
renderer turns them into the `markdown`, `text` and `html` formats, so both kinds of document
come out alike. A table's first row is its Markdown header row (Markdown has no headerless table).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Literal

BlockKind = Literal["heading", "paragraph", "item", "table", "code"]
_SPACES = re.compile(r"\s+")
# Characters that would start Markdown structure at the beginning of a paragraph's line.
_LEADING_MARKUP = re.compile(r"^(#{1,6}\s|[-*+]\s|\d+[.)]\s|>|```|\|)")


@dataclass
class DocBlock:
    """One block; `level` is a heading's level (1-6) or a list item's depth (0-based)."""

    kind: BlockKind
    text: str = ""
    level: int = 0
    ordered: bool = False
    rows: list[list[str]] = field(default_factory=list)


def squash(text: str) -> str:
    """Whitespace collapsed to single spaces, trimmed."""
    return _SPACES.sub(" ", text).strip()


def _cell(text: str) -> str:
    return squash(text).replace("|", "\\|")


def _table_markdown(rows: list[list[str]]) -> str:
    width = max(len(row) for row in rows)
    padded = [[_cell(c) for c in row] + [""] * (width - len(row)) for row in rows]
    lines = ["| " + " | ".join(padded[0]) + " |", "|" + " --- |" * width]
    lines.extend("| " + " | ".join(row) + " |" for row in padded[1:])
    return "\n".join(lines)


def _paragraph_markdown(text: str) -> str:
    return "\\" + text if _LEADING_MARKUP.match(text) else text


def _block_markdown(block: DocBlock, number: int) -> str:
    if block.kind == "heading":
        return "#" * min(max(block.level, 1), 6) + " " + block.text
    if block.kind == "item":
        marker = f"{number}." if block.ordered else "-"
        return "  " * block.level + f"{marker} {block.text}"
    if block.kind == "table":
        return _table_markdown(block.rows)
    if block.kind == "code":
        fence = "````" if "```" in block.text else "```"
        return f"{fence}\n{block.text}\n{fence}"
    return _paragraph_markdown(block.text)


def _useful(blocks: list[DocBlock]) -> list[DocBlock]:
    return [b for b in blocks if (b.rows if b.kind == "table" else b.text.strip())]


def to_markdown(blocks: list[DocBlock]) -> str:
    """Markdown: blank lines between blocks, none between items of one list."""
    parts: list[str] = []
    numbers: dict[int, int] = {}
    previous: DocBlock | None = None
    for block in _useful(blocks):
        if block.kind == "item":
            numbers = {d: n for d, n in numbers.items() if d <= block.level}
            numbers[block.level] = numbers.get(block.level, 0) + 1
        else:
            numbers = {}
        rendered = _block_markdown(block, numbers.get(block.level, 0))
        joined = previous is not None and previous.kind == "item" and block.kind == "item"
        parts.append(("\n" if joined else "\n\n") + rendered if parts else rendered)
        previous = block
    return "".join(parts).strip() + "\n" if parts else ""


def to_text(blocks: list[DocBlock]) -> str:
    """Plain text: one line per heading, paragraph or list item, table cells tab-separated."""
    lines: list[str] = []
    for block in _useful(blocks):
        if block.kind == "table":
            lines.extend("\t".join(squash(c) for c in row) for row in block.rows)
        else:
            lines.append(block.text)
    return "\n".join(lines)


def _table_html(rows: list[list[str]]) -> str:
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(squash(c))}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<table>{body}</table>"


def to_html(blocks: list[DocBlock], title: str | None) -> str:
    """A plain HTML page of the blocks (for `html`, `links` and `extract`)."""
    out = [f"<html><head><title>{html.escape(title or '')}</title></head><body>"]
    open_lists: list[str] = []
    for block in _useful(blocks):
        depth = block.level + 1 if block.kind == "item" else 0
        while len(open_lists) > depth:
            out.append(f"</{open_lists.pop()}>")
        while block.kind == "item" and len(open_lists) < depth:
            open_lists.append("ol" if block.ordered else "ul")
            out.append(f"<{open_lists[-1]}>")
        text = html.escape(block.text)
        if block.kind == "heading":
            level = min(max(block.level, 1), 6)
            out.append(f"<h{level}>{text}</h{level}>")
        elif block.kind == "item":
            out.append(f"<li>{text}</li>")
        elif block.kind == "table":
            out.append(_table_html(block.rows))
        elif block.kind == "code":
            out.append(f"<pre>{text}</pre>")
        else:
            out.append(f"<p>{text}</p>")
    out.extend(f"</{tag}>" for tag in reversed(open_lists))
    out.append("</body></html>")
    return "".join(out)


class DocumentError(ValueError):
    """A document that cannot be read: `reason` is `encrypted`, `corrupt`, `image_only`,
    `empty` or `too_many_pages` (picklable: it crosses the parse pool)."""

    def __init__(self, reason: str, message: str, pages: int | None = None) -> None:
        super().__init__(reason, message, pages)
        self.reason = reason
        self.message = message
        self.pages = pages

"""The main content of a page, as Markdown and as plain text: trafilatura, then a fidelity pass.

trafilatura chooses the main content: it scores at the top of the public article-extraction
benchmark (4-word-shingle F1 0.960 on ScrapingHub's 181 pages), runs offline, and keeps lists,
tables, quotes and emphasis. It reads the tree Outrider already parsed (worker/extract/clean.py
parses with trafilatura's own parser options: the same choice as from the text, 181 of 181).
worker/extract/fidelity.py then puts back the headings it dropped and turns each `<pre>` into a
fenced block with the page's exact text and language. Headings and code are spliced in after
trafilatura's serializer, which drops blank lines and may run a heading into loose text.
Why this way rather than converting the chosen subtree ourselves: trafilatura's pruning inside
the article (share bars, ads, captions) and its Markdown (tables, lists, escapes) stay as they
are, so the benchmark score holds: `benchmarks/article_f1.py` measures 0.956 for the `text`
format, 0.960 without the restored headline `<h1>`, which the benchmark's ground truth
(`articleBody`) leaves out by definition. The pass costs about 4 ms of CPU for a 30 KB page.

Options: comments are not content; permalink symbols next to headings (`¶`) are pruned; link
targets are left out (the link text stays; the `links` format has the URLs) unless `links`,
where they are absolute `[text](url)` resolved against the page's base URL (http(s) and mailto
only; trafilatura itself would resolve them against the site's root). When trafilatura finds
no main content (a tiny page, a feed), the page's visible text stands in (document.py).
"""

from __future__ import annotations

import contextlib
import copy
import re
import secrets
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin

import lxml.etree
import lxml.html
from lxml.etree import _Element
from trafilatura import bare_extraction
from trafilatura.settings import Document, Extractor
from trafilatura.xml import xmltotxt

from worker.extract.align import OutputIndex, align
from worker.extract.blocks import source_blocks
from worker.extract.fidelity import Code, code_blocks, restore_headings

# An underscore between two word characters cannot open emphasis in CommonMark, so
# trafilatura's escape of it (`snake\_case`) is noise that also splits the word in two.
_INTRAWORD_UNDERSCORE = re.compile(r"(?<=[^\W_])\\_(?=[^\W_])")
# Permalink anchors next to headings (Sphinx, MkDocs, GitHub): a symbol, not content.
PERMALINKS = "//a[normalize-space(.)='¶' or normalize-space(.)='#' or normalize-space(.)='§']"
_LIST_MARKER = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_LINK_SCHEMES = ("http://", "https://", "mailto:")
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")
_FENCE = re.compile(r"^`{3,}")


@dataclass(frozen=True)
class MainContent:
    """The main content; `found` is False when the fallback produced it."""

    markdown: str
    text: str
    found: bool


def _no_stray_indent(markdown: str) -> str:
    """Lines that trafilatura copied with the page's source indentation: after a blank line,
    four spaces would make a paragraph an indented code block. Code is always fenced here, so
    outside fences such a line loses its indentation (list items keep theirs)."""
    lines, fence = markdown.split("\n"), ""
    for number, line in enumerate(lines):
        stripped = line.strip()
        if fence:
            fence = "" if stripped.startswith(fence) and not stripped.strip("`") else fence
        elif opening := _FENCE.match(_LIST_MARKER.sub("", stripped)):  # `- ```sh` too
            fence = opening.group(0)
        elif stripped.endswith("```"):  # trafilatura's inline code with a newline in it
            fence = "```"
        elif not stripped:
            lines[number] = ""
        elif (
            line.startswith("    ")
            and (number == 0 or not lines[number - 1])
            and not _LIST_MARKER.match(line)
        ):
            lines[number] = line.lstrip()
    return "\n".join(lines)


def _tidy(text: str, keep_indent: bool = False) -> str:
    text = unicodedata.normalize("NFC", text)
    # Plain text may start with a code block: its first line keeps its indentation.
    return _LEADING_BLANK_LINES.sub("", text).rstrip() if keep_indent else text.strip()


@contextlib.contextmanager
def _absolute_hrefs(tree: lxml.html.HtmlElement, base_url: str) -> Iterator[None]:
    """Links resolved against the page's base URL while trafilatura copies the tree."""
    written: list[tuple[lxml.html.HtmlElement, str]] = []
    for anchor in tree.iter("a"):
        href = anchor.get("href")
        if href is None:
            continue
        with contextlib.suppress(ValueError):  # a malformed URL stays as written
            anchor.set("href", urljoin(base_url, href.strip()))
            written.append((anchor, href))
    try:
        yield
    finally:
        for anchor, href in written:
            anchor.set("href", href)


def _unlink_other_schemes(body: _Element) -> None:
    for ref in body.iter("ref"):
        if not (ref.get("target") or "").lower().startswith(_LINK_SCHEMES):
            ref.tag = "unlinked"
    lxml.etree.strip_tags(body, "unlinked")


@dataclass(frozen=True)
class _Piece:
    """A block spliced in after trafilatura's serializer: its Markdown and its text lines."""

    markdown: list[str]
    text: list[str]


def _code_piece(code: Code) -> _Piece:
    longest = max((len(run) for run in re.findall(r"`+", code.text)), default=0)
    fence = "`" * max(3, longest + 1)
    lines = code.text.split("\n")
    return _Piece([f"{fence}{code.language or ''}", *lines, fence], lines)


def _heading_pieces(heads: list[_Element], nonce: str) -> list[_Piece]:
    """The headings as trafilatura renders them (escapes, inline code), in one pass."""
    alone = lxml.etree.Element("body")
    for head in heads:
        alone.append(copy.deepcopy(head))
        alone[-1].tail = None  # the text after a heading stays where it is
        lxml.etree.SubElement(alone, "p").text = f"outridersep{nonce}"
    split = re.compile(f"\\s*outridersep{nonce}\\s*")
    markdown = split.split(_INTRAWORD_UNDERSCORE.sub("_", xmltotxt(alone, True)))
    text = split.split(xmltotxt(alone, False))
    return [
        _Piece([md.strip()], [" ".join(plain.split())])
        for md, plain in zip(markdown[: len(heads)], text[: len(heads)], strict=True)
    ]


def _splice(rendered: str, pieces: dict[str, _Piece], pattern: re.Pattern[str], md: bool) -> str:
    """Put each piece where its placeholder is, on lines of its own (blank-line separated in
    Markdown), indented under a list item's marker when it sits in one."""
    lines: list[str] = []
    after_piece = False
    for line in rendered.split("\n"):
        match = pattern.search(line)
        if match is None:
            if md and after_piece and line.strip():
                lines.append("")
            lines.append(line)
            after_piece = False
            continue
        piece = pieces[match.group(0)]
        block = piece.markdown if md else piece.text
        prefix, suffix = line[: match.start()], line[match.end() :].strip()
        marker = _LIST_MARKER.match(prefix)
        indent = " " * (marker.end() if marker else 0)  # under a list item only
        if marker and marker.end() == len(prefix):
            lines.append(prefix + block[0])  # a list item that starts with the piece
            block = block[1:]
        elif prefix.strip():
            lines.append(prefix.rstrip())
        if md and lines and lines[-1].strip() and not (marker and marker.end() == len(prefix)):
            lines.append("")
        lines.extend(indent + part if part else "" for part in block)
        after_piece = True
        if suffix:
            lines.extend(["", indent + suffix] if md else [indent + suffix])
            after_piece = False
    return "\n".join(lines)


def _render(body: _Element, codes: list[tuple[_Element, Code]], fidelity: bool) -> tuple[str, str]:
    """(Markdown, plain text) of trafilatura's output, with the page's code and headings."""
    nonce = secrets.token_hex(6)
    replaced = [(element, _code_piece(code)) for element, code in codes]
    if fidelity:  # every heading on lines of its own: trafilatura's may follow loose text
        heads = list(body.iterchildren("head"))
        replaced += zip(heads, _heading_pieces(heads, nonce), strict=True)
    pieces: dict[str, _Piece] = {}
    for number, (element, piece) in enumerate(replaced):
        parent = element.getparent()
        if parent is None:
            continue
        placeholder = lxml.etree.Element("p")
        placeholder.text = f"outriderpiece{nonce}x{number}x"
        placeholder.tail = element.tail
        parent.replace(element, placeholder)
        pieces[placeholder.text] = piece
    pattern = re.compile(f"outriderpiece{nonce}x[0-9]+x")
    markdown = _INTRAWORD_UNDERSCORE.sub("_", xmltotxt(body, True))
    lxml.etree.strip_tags(body, "ref")  # plain text has no link targets
    text = xmltotxt(body, False)
    if pieces:
        markdown = _splice(markdown, pieces, pattern, md=True)
        text = _splice(text, pieces, pattern, md=False)
    return markdown, text


def extract_main(
    tree: lxml.html.HtmlElement,
    url: str | None,
    *,
    base_url: str | None = None,
    links: bool = False,
    fidelity: bool = True,
) -> MainContent | None:
    """The main content of the page `tree` (not modified), or None when trafilatura finds none.

    `links` keeps link targets as Markdown links; `fidelity` False leaves trafilatura's
    output as it is (for the article benchmark's comparison).
    """
    options = Extractor(
        output_format="markdown",
        comments=False,
        formatting=True,
        tables=True,
        links=links,
        images=False,
        url=url,
    )
    with _absolute_hrefs(tree, base_url or url or "") if links else contextlib.nullcontext():
        document = bare_extraction(tree, options=options, prune_xpath=PERMALINKS)
    if not isinstance(document, Document) or document.body is None:
        return None
    body = document.body
    codes: list[tuple[_Element, Code]] = []
    if fidelity:
        blocks = source_blocks(tree)
        index = OutputIndex(body)
        positions = align(blocks, index)
        codes = code_blocks(blocks, positions, index)  # first: a heading goes after its code
        restore_headings(blocks, positions, index)
    if links:
        _unlink_other_schemes(body)
    markdown, text = _render(body, codes, fidelity)
    if not text.strip():
        return None
    markdown = _no_stray_indent(markdown) if fidelity else markdown
    return MainContent(markdown=_tidy(markdown), text=_tidy(text, bool(codes)), found=True)

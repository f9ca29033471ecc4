"""Markup helpers: parse once with lxml, clean for the `html` format, plain text as a fallback.

The parser drops comments and processing instructions and keeps no id index: trafilatura's own
options, so that it chooses the same main content from this tree as from the page's text
(checked on the 181 pages of the article benchmark) and the page is parsed once, not twice.
"""

from __future__ import annotations

import re
import secrets

import lxml.etree
import lxml.html
from lxml_html_clean import Cleaner

_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
# libxml2 refuses NUL and most C0 controls in a str; they carry no text anyway.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f]")
_CLEANER = Cleaner(
    scripts=True,  # <script>
    javascript=True,  # on* handlers, javascript: URLs
    comments=True,
    style=True,  # <style>, stylesheet <link>s
    inline_style=True,  # style="" attributes
    processing_instructions=True,
    links=False,  # keep <link rel=canonical> and friends
    meta=False,
    page_structure=False,
    embedded=False,
    frames=False,
    forms=False,
    annoying_tags=False,
    remove_unknown_tags=False,
    safe_attrs_only=False,
)
_DROP_FOR_TEXT = ("script", "style", "noscript", "template", "head")
_HEADINGS = frozenset(("h1", "h2", "h3", "h4", "h5", "h6"))
_BLOCKS = frozenset(
    ("address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption",
     "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li",
     "main", "nav", "ol", "p", "pre", "section", "table", "td", "th", "tr", "ul")
)  # fmt: skip


def prepare(html: str) -> str:
    """Text lxml accepts: no XML declaration (refused in a str), no control characters."""
    return _CONTROL.sub("", _XML_DECLARATION.sub("", html, count=1))


def parse(html: str) -> lxml.html.HtmlElement | None:
    """The document tree, or None when there is no markup to speak of."""
    text = prepare(html)
    if not text.strip():
        return None
    try:
        parser = lxml.html.HTMLParser(  # type: ignore[call-arg]  # the stubs lack it
            collect_ids=False, default_doctype=False, remove_comments=True, remove_pis=True
        )
        return lxml.html.document_fromstring(text, parser=parser)
    except (lxml.etree.ParserError, ValueError):
        return None


def clean_in_place(tree: lxml.html.HtmlElement) -> None:
    """Remove scripts, styles, comments, event handlers and javascript: URLs."""
    _CLEANER(tree)


def to_html(tree: lxml.html.HtmlElement) -> str:
    """Serialize a tree as HTML."""
    return str(lxml.html.tostring(tree, encoding="unicode", method="html"))


def visible_text(tree: lxml.html.HtmlElement) -> tuple[str, str]:
    """The text of every element, one line per block, as Markdown (headings marked `#`) and
    as plain text (mutates `tree`: use it last)."""
    for element in list(tree.iter(*_DROP_FOR_TEXT)):
        if element is not tree:
            element.drop_tree()
    marker = f"heading{secrets.token_hex(8)}x"  # no page has it: it marks a heading's line
    for element in tree.iter():
        if isinstance(element.tag, str) and element.tag in _BLOCKS:
            element.tail = "\n" + (element.tail or "")
            if element.tag in _HEADINGS:
                element.text = f"\n{marker}{element.tag[1]} {element.text or ''}"
    text = str(lxml.html.tostring(tree, encoding="unicode", method="text"))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    pattern = re.compile(f"^{marker}([1-6]) ?")
    lines = [line for line in lines if line and pattern.sub("", line)]
    markdown = (pattern.sub(lambda m: "#" * int(m.group(1)) + " ", line) for line in lines)
    return "\n".join(markdown), "\n".join(pattern.sub("", line) for line in lines)

"""The page as a person reads it: its text blocks in document order, with headings and code."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

import lxml.etree
import lxml.html

# Tokens are `\w+` runs, as in the article-extraction benchmark's metric: punctuation, Markdown
# escapes and whitespace differ between the page and trafilatura's output, words do not.
# Zero-width spaces and soft hyphens break no word for a reader (PostgreSQL's manual puts them
# in long identifiers): they are taken out before the words are read.
TOKEN = re.compile(r"\w+")
INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"))
HEADINGS = {f"h{level}": level for level in range(1, 7)}
_SKIP = frozenset(
    ("script", "style", "noscript", "template", "head", "svg", "math", "iframe", "object",
     "select", "textarea", "button")
)  # fmt: skip
_BLOCKS = frozenset(
    ("address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog",
     "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header", "hgroup",
     "html", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "td",
     "tfoot", "th", "thead", "tr", "ul", *HEADINGS)
)  # fmt: skip
# Where a heading's section ends: page furniture that trafilatura drops as a whole.
_BOUNDARY_TAGS = frozenset(("aside", "nav", "footer", "form", "dialog", "menu"))
_BOUNDARY_ROLES = frozenset(
    ("navigation", "complementary", "contentinfo", "banner", "search", "dialog")
)
_BOUNDARY_NAMES = re.compile(
    r"(?:^|[\s_-])(?:sidebar|widgets?|related|comments?|share|sharing|social|footer|nav|navbar|"
    r"navigation|menu|breadcrumbs?|cookies?|consent|newsletter|subscribe|promo|adverts?|ads|"
    r"banner|popup|modal|toc)(?:$|[\s_-])",
    re.IGNORECASE,
)
_ARTICLE_TAGS = frozenset(("article", "main", "section"))
# What a heading can head no further than: a list item, a cell, a link (a teaser card), a
# figure, a quote, a nested article or section.
_SCOPE_TAGS = frozenset(
    ("li", "td", "th", "dd", "dt", "a", "figure", "blockquote", "details", "article", "section")
)
# Permalink anchors next to headings (Sphinx, MkDocs, GitHub): a symbol, not content.
_PERMALINK_TEXT = frozenset(("¶", "#", "§", "🔗"))
# `language-python`, `lang-js`, `highlight-sql`, `highlight-source-rust` (GitHub), on the <pre>,
# its <code> or a wrapping <div>; Sphinx's `highlight-default`/`-none` name no language.
_LANGUAGE = re.compile(r"^(?:language|lang|highlight(?:-source)?)-([A-Za-z0-9_+#.-]{1,30})$")
_NO_LANGUAGE = frozenset(("default", "none", "text", "plain", "plaintext", "nohighlight"))


@dataclass(slots=True, eq=False)
class Block:
    """A run of text that belongs to one block element (its nested blocks are their own)."""

    element: lxml.html.HtmlElement
    level: int  # 1-6 for a heading, 0 otherwise
    bounds: tuple[lxml.html.HtmlElement, ...]  # furniture ancestors, outermost first
    scopes: tuple[lxml.html.HtmlElement, ...]  # furniture and _SCOPE_TAGS ancestors
    parts: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    linked: bool = True  # all its text is link text (a menu, a table of contents)
    resumes: bool = False  # a nested block ended: more text starts a new block

    @property
    def is_pre(self) -> bool:
        return bool(self.element.tag == "pre")


@functools.lru_cache(maxsize=4096)
def _names_a_box(classes: str, ident: str) -> bool:
    if classes and _BOUNDARY_NAMES.search(classes):
        return True
    # An id is often made from a heading's words (Sphinx: `s-adding-related-objects`): only a
    # short one names a box (`sidebar`, `main-nav`).
    return len(re.split(r"[\s_-]+", ident)) <= 2 and _BOUNDARY_NAMES.search(ident) is not None


def _is_boundary(element: lxml.html.HtmlElement, in_article: bool) -> bool:
    tag = element.tag
    if tag in _BOUNDARY_TAGS or (tag == "header" and not in_article):
        return True
    attributes = element.attrib
    if not attributes:  # most elements: nothing more to read
        return False
    if (attributes.get("role") or "").strip().lower() in _BOUNDARY_ROLES:
        return True
    classes, ident = attributes.get("class"), attributes.get("id")
    return bool(classes or ident) and _names_a_box(classes or "", ident or "")


class _Walk:
    """The state of one walk over the page: open blocks, furniture and scope ancestors."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.open: list[Block] = []
        self.bounds: list[lxml.html.HtmlElement] = []
        self.scopes: list[lxml.html.HtmlElement] = []
        self.articles = 0  # open article/main/section elements
        self.links = 0  # open <a> elements
        self.frozen: tuple[tuple[Any, ...], tuple[Any, ...]] | None = None

    def add(self, text: str | None) -> None:
        if not text or not self.open:
            return
        block = self.open[-1]
        if block.resumes:  # text after a nested block: a block of its own, in document order
            if text.isspace():
                return
            block = Block(block.element, 0, block.bounds, block.scopes)
            self.blocks.append(block)
            self.open[-1] = block
        block.parts.append(text)
        block.linked = block.linked and (self.links > 0 or text.isspace())

    def start(self, element: lxml.html.HtmlElement) -> bool:
        """Enter an element; False when its subtree is to be skipped."""
        tag = element.tag
        if _is_boundary(element, self.articles > 0):
            self.bounds.append(element)
            self.scopes.append(element)
            self.frozen = None
        elif tag in _SCOPE_TAGS:
            self.scopes.append(element)
            self.frozen = None
        self.articles += tag in _ARTICLE_TAGS
        self.links += tag == "a"
        if tag in _BLOCKS:
            if self.frozen is None:  # the same tuples for every block until the stacks change
                self.frozen = (tuple(self.bounds), tuple(self.scopes))
            block = Block(element, HEADINGS.get(tag, 0), *self.frozen)
            self.blocks.append(block)
            self.open.append(block)
            if tag == "pre":
                self.add(element.text_content())
                return False
        self.add("\n" if tag == "br" else element.text)
        return True

    def end(self, element: lxml.html.HtmlElement) -> None:
        tag = element.tag
        self.articles -= tag in _ARTICLE_TAGS
        self.links -= tag == "a"
        for stack in (self.bounds, self.scopes):
            if stack and stack[-1] is element:
                stack.pop()
                self.frozen = None
        if self.open and self.open[-1].element is element:
            self.open.pop()
            if self.open:
                self.open[-1].resumes = True
        self.add(element.tail)


def source_blocks(root: lxml.html.HtmlElement) -> list[Block]:
    """Every block of the page in document order; a <pre> is one block, scripts are skipped."""
    walk = _Walk()
    walker = lxml.etree.iterwalk(root, events=("start", "end"))
    for event, element in walker:
        if event == "end":
            walk.end(element)
        elif element.tag in _SKIP or not walk.start(element):
            walker.skip_subtree()
    for block in walk.blocks:
        text = "".join(block.parts)  # a word may run across inline tags, as on the page
        block.tokens = TOKEN.findall(text if text.isascii() else text.translate(INVISIBLE))
        block.parts = []
    return [block for block in walk.blocks if block.tokens or block.level or block.is_pre]


def heading_text(element: lxml.html.HtmlElement) -> str:
    """A heading's text as a person reads it: whitespace collapsed, permalink symbols gone."""
    pieces: list[str] = []
    walker = lxml.etree.iterwalk(element, events=("start", "end"))
    for event, node in walker:
        if event == "start":
            if node.tag in _SKIP or (
                node is not element
                and node.tag == "a"
                and node.text_content().strip() in _PERMALINK_TEXT
            ):
                walker.skip_subtree()
                continue
            pieces.append(node.text or "")
        elif node is not element:
            pieces.append(node.tail or "")
    words = " ".join("".join(pieces).split()).split(" ")
    while words and words[-1] in _PERMALINK_TEXT:
        words.pop()
    return " ".join(words)


def code_text(pre: lxml.html.HtmlElement) -> str:
    """The text of a <pre> exactly as shown: indentation and blank lines kept, `<br>` a newline."""
    pieces: list[str] = []
    walker = lxml.etree.iterwalk(pre, events=("start", "end"))
    for event, node in walker:
        if event == "start":
            if node.tag in ("script", "style", "template"):
                walker.skip_subtree()
                continue
            pieces.append("\n" if node.tag == "br" else node.text or "")
        elif node is not pre:
            pieces.append(node.tail or "")
    text = "".join(pieces).replace("\r\n", "\n").replace("\r", "\n")
    if text.startswith("\n"):  # the newline right after <pre> is not content (HTML spec)
        text = text[1:]
    return text.rstrip()


def _languages(element: lxml.html.HtmlElement) -> str | None:
    for name in (element.get("class") or "").split():
        match = _LANGUAGE.match(name)
        if match and match.group(1).lower() not in _NO_LANGUAGE:
            return match.group(1)
    return None


def code_language(pre: lxml.html.HtmlElement) -> str | None:
    """The language named by the classes of a <pre>, its <code> or a wrapping <div>."""
    candidates = [pre, *pre.iterchildren("code")]
    parent = pre.getparent()
    for _ in range(3):  # Sphinx: div.highlight-python > div.highlight > pre
        if parent is None or parent.tag not in ("div", "figure"):
            break
        candidates.append(parent)
        parent = parent.getparent()
    for element in candidates:
        if language := _languages(element):
            return language
    return None

"""The page as a person reads it: its text blocks in document order, with headings and code."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import lxml.etree
import lxml.html

# Tokens are `\w+` runs, as in the article-extraction benchmark's metric: punctuation, Markdown
# escapes and whitespace differ between the page and trafilatura's output, words do not.
TOKEN = re.compile(r"\w+")
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
    r"banner|popup|modal)(?:$|[\s_-])",
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

    @property
    def is_pre(self) -> bool:
        return bool(self.element.tag == "pre")


def _is_boundary(element: lxml.html.HtmlElement, in_article: bool) -> bool:
    tag = element.tag
    if tag in _BOUNDARY_TAGS or (tag == "header" and not in_article):
        return True
    if (element.get("role") or "").strip().lower() in _BOUNDARY_ROLES:
        return True
    names = f"{element.get('class') or ''} {element.get('id') or ''}"
    return names.strip() != "" and _BOUNDARY_NAMES.search(names) is not None


def source_blocks(root: lxml.html.HtmlElement) -> list[Block]:
    """Every block of the page in document order; a <pre> is one block, scripts are skipped."""
    blocks: list[Block] = []
    open_blocks: list[Block] = []
    bounds: list[lxml.html.HtmlElement] = []
    scopes: list[lxml.html.HtmlElement] = []
    articles = 0
    walker = lxml.etree.iterwalk(root, events=("start", "end"))
    for event, element in walker:
        tag = element.tag
        if event == "start":
            if tag in _SKIP:
                walker.skip_subtree()
                continue
            if _is_boundary(element, articles > 0):
                bounds.append(element)
                scopes.append(element)
            elif tag in _SCOPE_TAGS:
                scopes.append(element)
            if tag in _ARTICLE_TAGS:
                articles += 1
            if tag in _BLOCKS:
                block = Block(element, HEADINGS.get(tag, 0), tuple(bounds), tuple(scopes))
                blocks.append(block)
                open_blocks.append(block)
                if tag == "pre":
                    block.parts.append(element.text_content())
                    walker.skip_subtree()
                    continue
            if tag == "br" and open_blocks:
                open_blocks[-1].parts.append("\n")
            if element.text and open_blocks:
                open_blocks[-1].parts.append(element.text)
            continue
        if tag in _ARTICLE_TAGS:
            articles -= 1
        if bounds and bounds[-1] is element:
            bounds.pop()
        if scopes and scopes[-1] is element:
            scopes.pop()
        if open_blocks and open_blocks[-1].element is element:
            open_blocks.pop()
            if open_blocks:  # the parent's text after this block is a block of its own
                parent = open_blocks[-1]
                open_blocks[-1] = Block(parent.element, 0, parent.bounds, parent.scopes)
                blocks.append(open_blocks[-1])
        if element.tail and open_blocks:
            open_blocks[-1].parts.append(element.tail)
    for block in blocks:
        block.tokens = TOKEN.findall("".join(block.parts))  # a word may span inline tags
        block.parts = []
    return blocks


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

"""What trafilatura drops from the main content, put back from the page: headings and code.

trafilatura picks the main content well (4-gram F1 about 0.96 on the public article benchmark)
but its recovery paths keep paragraphs only: an `<h1>` above the first paragraph of a `<div>`
root, the headings of a DocBook or Sphinx page, a `<pre>` without code-like characters (it
becomes a quote or a paragraph). Its Markdown also drops blank lines inside code and the
language. So the page's blocks (worker/extract/blocks.py) are aligned, in document order, with
trafilatura's output by their `\\w+` words:

- A missing heading is inserted before the next kept block when that block belongs to its
  section: no heading of the same or a higher level comes first (and it is not the last of a
  run of such headings: a list of teasers), the heading's box (furniture: `aside`, `nav`,
  `footer`, a page `header`, a `sidebar`/`related`/`share`/`toc`... class; or a list item, a
  cell, a link card, a figure, a nested article or section) is not left on the way, no dropped
  block of more than `DROP_BLOCK` words and at most `DROP_BUDGET` dropped words lie in between
  (menus, furniture and subheadings do not count). A kept heading that trafilatura turned into
  a paragraph, a code span or loose text becomes a heading again.
- An output block whose words are exactly a `<pre>`'s becomes that `<pre>`: its text as shown
  (indentation, blank lines) and its language (see blocks.code_language). A `<pre>` dropped
  between kept text (a Sphinx block with a caption) is put back.

Cost: one walk over the page's tree and one over the output (worker/extract/align.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import lxml.etree
from lxml.etree import _Element

from worker.extract.align import OutputIndex
from worker.extract.blocks import Block, code_language, code_text, heading_text

# Between a heading and its kept text: a byline, a date, "5 min read" (short lines), not a
# caption or a teaser's summary (a sentence or more).
DROP_BLOCK = 12  # words of one dropped block
DROP_BUDGET = 30  # words of dropped blocks in all (page furniture does not count)
# Blocks looked at around a missing heading or code block: menus and tables of contents cost
# no words, so a heading may sit above a long one; dropped text is bounded by the budget.
LOOKAHEAD = 400
_CELL_TAGS = frozenset(("cell", "row", "table"))


@dataclass(frozen=True, slots=True)
class Code:
    """A code block as the page shows it."""

    text: str
    language: str | None


def _next_kept(
    blocks: list[Block], positions: list[int | None], at: int
) -> tuple[int | None, int, bool]:
    """Where the text under the heading `blocks[at]` starts in the output, if it was kept, and
    the number of that block; and whether the section is empty (a sibling heading came first)."""
    heading = blocks[at]
    scope = heading.scopes[-1] if heading.scopes else None
    dropped, between = 0, False
    for number in range(at + 1, min(len(blocks), at + 1 + LOOKAHEAD)):
        block, position = blocks[number], positions[number]
        if block.level and block.level <= heading.level:
            return None, number, not between  # nothing at all in between: a list of headings
        if scope is not None and scope not in block.scopes:
            return (
                None,
                number,
                False,
            )  # the heading's box (furniture, a card, an item) is all dropped
        if position is not None:
            return position, number, False
        between = between or bool(block.tokens)
        # Menus, furniture and subheadings (put back themselves, maybe) cost nothing.
        free = block.linked or block.level or len(block.bounds) > len(heading.bounds)
        if block.tokens and not free:
            if len(block.tokens) > DROP_BLOCK:
                return None, number, False  # real text was dropped: the heading went with it
            dropped += len(block.tokens)
            if dropped > DROP_BUDGET:
                return None, number, False
    return None, at, False


def _new_heading(block: Block) -> _Element:
    head = lxml.etree.Element("head", rend=f"h{block.level}")
    head.text = heading_text(block.element)
    return head


def restore_headings(
    blocks: list[Block], positions: list[int | None], index: OutputIndex
) -> list[_Element]:
    """Insert the main content's missing headings into the output; returns them."""
    last, inserted = 0, []  # `last`: the end of the last kept block in the output
    run_level = 0  # the level of a heading just dropped for an empty section
    for at, block in enumerate(blocks):
        position = positions[at]
        if position is not None:
            if block.level:  # kept, maybe as a paragraph or a code block: a heading again
                element = index.element(position, len(block.tokens))
                if element.tag != "head" and element.getparent() is index.body:
                    element.attrib.clear()
                    element.tag, element.attrib["rend"] = "head", f"h{block.level}"
            last, run_level = position + len(block.tokens), 0  # where the kept block ends
            continue
        if not block.level or not block.tokens:
            continue
        anchor, number, empty = _next_kept(blocks, positions, at)
        if anchor is None or block.level == run_level:  # not main content; teaser headings
            run_level = block.level if empty else run_level
            continue
        if tuple(block.tokens) in index.headings:
            continue  # already a heading, elsewhere
        cleared = _drop_debris(index, block.tokens, last, anchor)
        loose = index.find_run(block.tokens, last, anchor)
        if not cleared and loose is not None and loose + len(block.tokens) <= anchor:
            continue  # there, inside a bigger block
        inserted.append(_new_heading(block))
        place = _first_of(blocks[at + 1 : number], index, last, anchor)
        index.top_level_at(place).addprevious(inserted[-1])
    return inserted


def _first_of(between: list[Block], index: OutputIndex, start: int, anchor: int) -> int:
    """Where the heading goes: before the anchor, or before any text of the blocks between
    the heading and the anchor that trafilatura kept in a form the alignment missed (a `<dt>`
    run into loose text, say)."""
    place = anchor
    for block in between:
        if block.tokens and not block.level:
            found = index.find_run(block.tokens, start, place)
            place = found if found is not None else place
    return place


def _drop_debris(index: OutputIndex, heading: list[str], start: int, end: int) -> bool:
    """Remove what trafilatura kept of the heading (loose text, its `<code>`) before the
    anchor; True when that was all of the heading."""
    joined, removed = f" {' '.join(heading)} ", []
    for element, words in index.top_level_between(start, end):
        parent = element.getparent()
        if words and f" {' '.join(words)} " in joined and parent is not None:
            parent.remove(element)  # with its tail
            removed.extend(words)
    return removed == heading


def _dropped_words(blocks: list[Block], numbers: range) -> int:
    """Words of dropped text in these blocks, not counting menus, furniture and headings."""
    return sum(
        len(block.tokens)
        for block in (blocks[n] for n in numbers)
        if not block.linked and not block.bounds and not block.level
    )


def _code_anchor(blocks: list[Block], positions: list[int | None], at: int) -> int | None:
    """For a `<pre>` trafilatura dropped (a Sphinx block with a caption, say): the output
    position to put it before, when kept text comes close before and after it."""
    window = range(max(0, at - LOOKAHEAD), min(len(blocks), at + LOOKAHEAD + 1))
    before = [n for n in window if n < at and positions[n] is not None]
    after = [n for n in window if n > at and positions[n] is not None]
    if blocks[at].bounds or not before or not after:
        return None
    if _dropped_words(blocks, range(before[-1] + 1, at)) > DROP_BUDGET:
        return None
    if _dropped_words(blocks, range(at + 1, after[0])) > DROP_BUDGET:
        return None
    return positions[after[0]]


def code_blocks(
    blocks: list[Block], positions: list[int | None], index: OutputIndex
) -> list[tuple[_Element, Code]]:
    """Output elements that hold a `<pre>` of the page, with the code as the page shows it;
    a `<pre>` of the main content that trafilatura dropped is put back as a new element."""
    found: list[tuple[_Element, Code]] = []
    cursor = 0
    for at, block in enumerate(blocks):
        text = code_text(block.element) if block.is_pre and block.tokens else ""
        if not text:
            continue
        position = index.find(block.tokens, cursor, whole=True)
        if position is None:
            anchor = _code_anchor(blocks, positions, at)
            if anchor is None:
                continue
            element = lxml.etree.Element("code")
            index.top_level_at(anchor).addprevious(element)
        else:
            element, cursor = index.element(position, len(block.tokens)), position + 1
            if element is index.body or any(a.tag in _CELL_TAGS for a in element.iterancestors()):
                continue  # a table cell holds one line in Markdown: trafilatura's rendering stays
        found.append((element, Code(text, code_language(block.element))))
    return found

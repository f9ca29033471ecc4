"""What trafilatura drops from the main content, put back from the page: headings and code.

trafilatura picks the main content well (4-gram F1 about 0.96 on the public article benchmark)
but its recovery paths keep paragraphs only: an `<h1>` above the first paragraph of a `<div>`
root, the headings of a DocBook or Sphinx page, a `<pre>` without code-like characters (it
becomes a quote or a paragraph). Its Markdown also drops blank lines inside code and the
language. So the page's blocks (worker/extract/blocks.py) are aligned, in document order, with
trafilatura's output by their `\\w+` words:

- A heading that is missing is inserted before the next block that was kept, when that block
  belongs to its section: no heading of the same or a higher level comes first, no furniture
  box (`aside`, `nav`, `footer`, a page `header`, a `sidebar`/`related`/`share`... class) is
  left on the way, and at most `DROP_BUDGET` words of other dropped text lie in between.
- An output block whose words are exactly a `<pre>`'s becomes that `<pre>`: its text as shown
  (indentation, blank lines) and its language (see blocks.code_language).

Cost: one walk over the page's tree and one over the output, plus a 4-word index of the output.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import lxml.etree
from lxml.etree import _Element

from worker.extract.blocks import TOKEN, Block, code_language, code_text, heading_text

# Between a heading and its kept text: a byline, a date, "5 min read" (short lines), not a
# caption or a teaser's summary (a sentence or more).
DROP_BLOCK = 12  # words of one dropped block
DROP_BUDGET = 30  # words of dropped blocks in all (page furniture does not count)
LOOKAHEAD = 60  # blocks looked at after a missing heading
_GRAM = 4
_PREFIX = 8  # words of a long block that must match (trafilatura may drop inline bits later)
_CELL_TAGS = frozenset(("cell", "row", "table"))
_BLOCK_TAGS = frozenset(("head", "p", "item", "cell", "quote", "list", "table", "row", "code"))
_INLINE_PARENTS = frozenset(("p", "head", "hi", "ref", "cell", "quote", "del"))


def _is_block(element: _Element) -> bool:
    """An element that is a block of its own in the output, not a run of text in a line."""
    if element.tag not in _BLOCK_TAGS:
        return False
    parent = element.getparent()
    return element.tag != "code" or parent is None or parent.tag not in _INLINE_PARENTS


@dataclass(frozen=True, slots=True)
class Code:
    """A code block as the page shows it."""

    text: str
    language: str | None


class OutputIndex:
    """trafilatura's output as one word list, with where each element starts and ends."""

    def __init__(self, body: _Element) -> None:
        self.body = body
        self.top: list[_Element] = list(body)
        self.spans: dict[tuple[int, int], _Element] = {}
        self.short: dict[tuple[str, ...], list[int]] = {}
        self.headings: set[tuple[str, ...]] = set()
        text, marks = _text_and_marks(body)
        found = list(TOKEN.finditer(text))
        self.words: list[str] = [match.group(0) for match in found]
        offsets = [match.start() for match in found]
        tops = set(self.top)
        self.top_starts = [bisect.bisect_left(offsets, s) for e, s, _ in marks if e in tops]
        for element, char_start, char_end in marks:
            span = (bisect.bisect_left(offsets, char_start), bisect.bisect_left(offsets, char_end))
            words = tuple(self.words[span[0] : span[1]])
            if element.tag == "head":
                self.headings.add(words)
            if _is_block(element):
                self.spans.setdefault(span, element)  # marks are outermost first
                if 0 < len(words) < _GRAM:
                    self.short.setdefault(words, []).append(span[0])
        for positions in self.short.values():
            positions.sort()
        self.grams: dict[tuple[str, ...], list[int]] = {}
        for position in range(len(self.words) - _GRAM + 1):
            gram = tuple(self.words[position : position + _GRAM])
            self.grams.setdefault(gram, []).append(position)

    def find(self, words: list[str], start: int, *, whole: bool) -> int | None:
        """Where `words` occur at or after `start`; `whole`: exactly one output element."""
        if len(words) < _GRAM:
            return _first_at_or_after(self.short.get(tuple(words), []), start)
        want = len(words) if whole else min(len(words), _PREFIX)
        for position in self._candidates(tuple(words[:_GRAM]), start):
            same = self.words[position : position + want] == words[:want]
            if same and (not whole or (position, position + want) in self.spans):
                return position
        if whole or len(words) < 2 * _PREFIX:
            return None
        tail = words[-_GRAM:]  # trafilatura may have cut the start (a label, a dateline)
        for position in self._candidates(tuple(tail), start):
            return position
        return None

    def find_run(self, words: list[str], start: int) -> int | None:
        """Where all of `words` occur in a row at or after `start` (inside any element)."""
        if len(words) < _GRAM:
            for position in range(start, len(self.words) - len(words) + 1):
                if self.words[position : position + len(words)] == words:
                    return position
            return None
        for position in self._candidates(tuple(words[:_GRAM]), start):
            if self.words[position : position + len(words)] == words:
                return position
        return None

    def top_level_between(self, start: int, end: int) -> list[tuple[_Element, list[str]]]:
        """The body's children that start in [start, end), with their words."""
        first = bisect.bisect_left(self.top_starts, start)
        last = bisect.bisect_left(self.top_starts, end)
        bounds = [*self.top_starts[first : last + 1], len(self.words)][: last - first + 1]
        return [
            (self.top[at], self.words[self.top_starts[at] : bounds[at - first + 1]])
            for at in range(first, last)
        ]

    def _candidates(self, gram: tuple[str, ...], start: int) -> list[int]:
        positions = self.grams.get(gram, [])
        return positions[bisect.bisect_left(positions, start) :]

    def element(self, position: int, length: int) -> _Element:
        """The outermost element spanning exactly these words."""
        return self.spans[(position, position + length)]

    def top_level_at(self, position: int) -> _Element:
        """The child of the body that holds the word at `position`."""
        index = max(0, bisect.bisect_right(self.top_starts, position) - 1)
        return self.top[index]


def _text_and_marks(body: _Element) -> tuple[str, list[tuple[_Element, int, int]]]:
    """The output's text (a word may run across inline elements, as on the page; blocks and
    line breaks separate words) and each element's character range in it, in document order."""
    pieces: list[str] = []
    length = 0
    marks: list[tuple[_Element, int, int]] = []
    started: dict[_Element, tuple[int, int]] = {}  # element: (its mark, where it starts)
    for event, element in lxml.etree.iterwalk(body, events=("start", "end")):
        if element is body:
            if event == "start" and body.text:
                pieces.append(body.text)
                length += len(body.text)
            continue
        breaks = element.tag == "lb" or _is_block(element)
        if event == "start":
            addition = (" " if breaks else "") + (element.text or "")
            started[element] = (len(marks), length + (1 if breaks else 0))
            marks.append((element, 0, 0))
        else:
            mark, start = started.pop(element)
            marks[mark] = (element, start, length)
            addition = (" " if breaks else "") + (element.tail or "")
        pieces.append(addition)
        length += len(addition)
    return "".join(pieces), marks


def _first_at_or_after(positions: list[int], start: int) -> int | None:
    index = bisect.bisect_left(positions, start)
    return positions[index] if index < len(positions) else None


def _longest_run(found: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The longest subsequence of (block number, position) whose positions never decrease."""
    tails: list[int] = []  # the smallest last position of a run of each length
    tail_at: list[int] = []  # index in `found` of that run's last element
    previous: list[int] = [-1] * len(found)
    for at, (_, position) in enumerate(found):
        length = bisect.bisect_right(tails, position)
        if length == len(tails):
            tails.append(position)
            tail_at.append(at)
        else:
            tails[length], tail_at[length] = position, at
        previous[at] = tail_at[length - 1] if length else -1
    run: list[tuple[int, int]] = []
    at = tail_at[-1] if tail_at else -1
    while at >= 0:
        run.append(found[at])
        at = previous[at]
    return run[::-1]


def align(blocks: list[Block], index: OutputIndex) -> list[int | None]:
    """Where each kept block's words start in the output, None for a dropped block.

    A block's first occurrence counts only if it keeps document order: the longest run of
    blocks whose occurrences never go backwards (an item trafilatura moved is not taken as
    kept where it is). Blocks in page furniture come second: they count where they fit
    between the others, so a sidebar's table of contents cannot take a heading's place.
    """
    found: list[tuple[int, int]] = []  # (block number, position)
    furniture: list[tuple[int, int]] = []
    for number, block in enumerate(blocks):
        if block.tokens:
            whole = block.level > 0 or len(block.tokens) < _GRAM
            position = index.find(block.tokens, 0, whole=whole)
            if position is not None:
                (furniture if block.bounds else found).append((number, position))
    positions: list[int | None] = [None] * len(blocks)
    run = _longest_run(found)
    for number, position in run:
        positions[number] = position
    numbers = [number for number, _ in run]
    for number, position in furniture:
        at = bisect.bisect_left(numbers, number)
        low = run[at - 1][1] if at else 0
        high = run[at][1] if at < len(run) else len(index.words)
        if low <= position <= high:
            positions[number] = position
    return positions


def _next_kept(
    blocks: list[Block], positions: list[int | None], at: int
) -> tuple[int | None, bool]:
    """Where the text under the heading `blocks[at]` starts in the output, if it was kept;
    and whether its section is empty (a sibling heading came first)."""
    heading = blocks[at]
    scope = heading.scopes[-1] if heading.scopes else None
    dropped, between = 0, False
    for number in range(at + 1, min(len(blocks), at + 1 + LOOKAHEAD)):
        block, position = blocks[number], positions[number]
        if block.level and block.level <= heading.level:
            return None, not between  # nothing at all in between: a list of headings
        if scope is not None and scope not in block.scopes:
            return None, False  # the heading's box (furniture, a card, an item) is all dropped
        if position is not None:
            return position, False
        between = between or bool(block.tokens)
        if block.tokens and len(block.bounds) == len(heading.bounds):  # furniture costs nothing
            if len(block.tokens) > DROP_BLOCK:
                return None, False  # real text was dropped: the heading went with it
            dropped += len(block.tokens)
            if dropped > DROP_BUDGET:
                return None, False
    return None, False


def _new_heading(block: Block) -> _Element:
    head = lxml.etree.Element("head", rend=f"h{block.level}")
    head.text = heading_text(block.element)
    return head


def restore_headings(blocks: list[Block], index: OutputIndex) -> list[_Element]:
    """Insert the main content's missing headings into the output; returns them."""
    positions = align(blocks, index)
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
        anchor, empty = _next_kept(blocks, positions, at)
        if anchor is None or block.level == run_level:  # not main content; teaser headings
            run_level = block.level if empty else run_level
            continue
        if tuple(block.tokens) in index.headings:
            continue  # already a heading, elsewhere
        cleared = _drop_debris(index, block.tokens, last, anchor)
        loose = index.find_run(block.tokens, last)
        if not cleared and loose is not None and loose + len(block.tokens) <= anchor:
            continue  # there, inside a bigger block
        inserted.append(_new_heading(block))
        index.top_level_at(anchor).addprevious(inserted[-1])
    return inserted


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


def find_code_blocks(blocks: list[Block], index: OutputIndex) -> list[tuple[_Element, Code]]:
    """Output elements that hold a `<pre>` of the page, with the code as the page shows it."""
    found: list[tuple[_Element, Code]] = []
    cursor = 0
    for block in blocks:
        if not block.is_pre or not block.tokens:
            continue
        position = index.find(block.tokens, cursor, whole=True)
        if position is None:
            continue
        element = index.element(position, len(block.tokens))
        cursor = position + 1
        if element is index.body or any(a.tag in _CELL_TAGS for a in element.iterancestors()):
            continue  # a table cell holds one line in Markdown: trafilatura's rendering stays
        text = code_text(block.element)
        if text:
            found.append((element, Code(text, code_language(block.element))))
    return found

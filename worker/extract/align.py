"""trafilatura's output aligned with the page: which of the page's blocks it kept, and where.

Words are `\\w+` runs (worker/extract/blocks.py). The output becomes one word list with each
element's span and a 4-word index, so a block is found in about constant time; a block is kept
where its first occurrence keeps document order with the others (`align`).
"""

from __future__ import annotations

import bisect

import lxml.etree
from lxml.etree import _Element

from worker.extract.blocks import TOKEN, Block, word_of

_GRAM = 4
_PREFIX = 8  # words of a long block that must match (trafilatura may drop inline bits later)
_CANDIDATES = 50  # places a block's first words are looked for at most
_BLOCK_TAGS = frozenset(("head", "p", "item", "cell", "quote", "list", "table", "row", "code"))
_INLINE_PARENTS = frozenset(("p", "head", "hi", "ref", "cell", "quote", "del"))


def _is_block(element: _Element) -> bool:
    """An element that is a block of its own in the output, not a run of text in a line."""
    if element.tag not in _BLOCK_TAGS:
        return False
    parent = element.getparent()
    return element.tag != "code" or parent is None or parent.tag not in _INLINE_PARENTS


class OutputIndex:
    """trafilatura's output as one word list, with where each element starts and ends."""

    def __init__(self, body: _Element) -> None:
        self.body = body
        self.top: list[_Element] = list(body)
        self.spans: dict[tuple[int, int], _Element] = {}
        self.short: dict[tuple[str, ...], list[int]] = {}
        self.headings: set[tuple[str, ...]] = set()
        text, marks = _text_and_marks(body)
        found = [match for match in TOKEN.finditer(text) if word_of(match)]
        self.words: list[str] = [word_of(match) for match in found]
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
        if whole:
            for position in self._candidates(tuple(words[:_GRAM]), start):
                end = position + len(words)
                if self.words[position:end] == words and (position, end) in self.spans:
                    return position
            return None
        best, best_length = None, min(len(words), _PREFIX) - 1
        for position in self._candidates(tuple(words[:_GRAM]), start)[:_CANDIDATES]:
            length = _common_prefix(self.words, position, words)  # the longest match wins:
            if length > best_length:  # paragraphs may start alike
                best, best_length = position, length
        if best is not None or len(words) < 2 * _PREFIX:
            return best
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


def _common_prefix(words: list[str], position: int, wanted: list[str]) -> int:
    length = 0
    for have, want in zip(words[position : position + len(wanted)], wanted, strict=False):
        if have != want:
            break
        length += 1
    return length


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

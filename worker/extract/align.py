"""trafilatura's output aligned with the page: which of the page's blocks it kept, and where.

Words are `\\w+` runs (worker/extract/blocks.py). The output becomes one word list with each
element's span; the places of the blocks' first four words are found in one pass, so a block
is found in about constant time; a block is kept where its first occurrence keeps document
order with the others (`align`).
"""

from __future__ import annotations

import bisect

import lxml.etree
from lxml.etree import _Element

from worker.extract.blocks import INVISIBLE, TOKEN, Block

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
        self.top: list[_Element] = list(body)  # with their start in `top_starts`
        self.spans: dict[tuple[int, int], _Element] = {}
        self.short: dict[tuple[str, ...], list[int]] = {}
        self.headings: set[tuple[str, ...]] = set()
        self.words, spans, tops = _words_and_spans(body)
        self.top_starts = [start for _, start in tops]
        for element, start, end in spans:
            if element.tag == "head":
                self.headings.add(tuple(self.words[start:end]))
            if element.tag != "lb":
                self.spans[(start, end)] = element  # ends come inner first: the outermost stays
                if 0 < end - start < _GRAM:
                    self.short.setdefault(tuple(self.words[start:end]), []).append(start)
        for positions in self.short.values():
            positions.sort()
        self.grams: dict[tuple[str, ...], list[int]] = {}

    def index(self, grams: set[tuple[str, ...]]) -> None:
        """Find where each of these 4-word runs occurs, in one pass (cheaper than indexing
        every run of the output); `find` looks up any other run on its own."""
        grams -= self.grams.keys()
        firsts = {gram[0] for gram in grams}
        for gram in grams:
            self.grams[gram] = []
        w = self.words
        for position, word in enumerate(w):
            if word in firsts and (gram := tuple(w[position : position + _GRAM])) in grams:
                self.grams[gram].append(position)

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

    def find_run(self, words: list[str], start: int, end: int | None = None) -> int | None:
        """Where all of `words` occur in a row, starting in [start, end) (in any element)."""
        end = len(self.words) if end is None else end
        if len(words) < _GRAM:
            for position in range(start, min(end, len(self.words) - len(words) + 1)):
                if self.words[position : position + len(words)] == words:
                    return position
            return None
        for position in self._candidates(tuple(words[:_GRAM]), start):
            if position >= end:
                break
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
        if gram not in self.grams:
            self.index({gram})
        positions = self.grams[gram]
        return positions[bisect.bisect_left(positions, start) :]

    def element(self, position: int, length: int) -> _Element:
        """The outermost element spanning exactly these words."""
        return self.spans[(position, position + length)]

    def top_level_at(self, position: int) -> _Element:
        """The child of the body that holds the word at `position`."""
        index = max(0, bisect.bisect_right(self.top_starts, position) - 1)
        return self.top[index]


class _Reader:
    """Reads the output's words: a word may run across inline elements, as on the page; a
    block, a line break or a child of the body separates words and has a span of its own."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.run: list[str] = []
        self.spans: list[tuple[_Element, int, int]] = []  # blocks, in the order they end
        self.tops: list[tuple[_Element, int]] = []
        self.started: dict[_Element, int] = {}

    def flush(self) -> int:
        if self.run:
            text = "".join(self.run)
            self.words += TOKEN.findall(text if text.isascii() else text.translate(INVISIBLE))
            self.run.clear()
        return len(self.words)

    def start(self, element: _Element, top: bool) -> None:
        if top or element.tag == "lb" or _is_block(element):
            self.started[element] = self.flush()
            if top:
                self.tops.append((element, self.started[element]))
        self.run.append(element.text or "")

    def end(self, element: _Element) -> None:
        if element in self.started:
            self.spans.append((element, self.started.pop(element), self.flush()))
        self.run.append(element.tail or "")


def _words_and_spans(
    body: _Element,
) -> tuple[list[str], list[tuple[_Element, int, int]], list[tuple[_Element, int]]]:
    """The output's words, the word span of each block, and where each child of the body
    starts."""
    reader = _Reader()
    reader.run.append(body.text or "")
    depth = 0
    for event, element in lxml.etree.iterwalk(body, events=("start", "end")):
        if element is body:
            continue
        if event == "start":
            depth += 1
            reader.start(element, depth == 1)
        else:
            depth -= 1
            reader.end(element)
    reader.flush()
    return reader.words, reader.spans, reader.tops


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
    index.index(
        {tuple(block.tokens[:_GRAM]) for block in blocks if len(block.tokens) >= _GRAM}
        | {tuple(block.tokens[-_GRAM:]) for block in blocks if len(block.tokens) >= 2 * _PREFIX}
    )
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

"""Safe JSON: values JSONB can hold (no NUL, lone surrogates, huge ints); depth-bounded parsing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import orjson

MAX_SAFE_INT = 2**63 - 1
# pydantic refuses to serialize much deeper values (and Python recursion is finite).
MAX_DEPTH = 100
# Parsed bodies (an `http` job's JSON answer) sit a level or more down in a job's result: a
# lower limit than MAX_DEPTH means `scrub` never has to flatten part of one.
PARSE_MAX_DEPTH = 64
# json_depth keeps only the bytes that delimit strings and containers, and weighs the brackets.
_NOT_MARKS = bytes(set(range(256)) - set(b'"[]{}'))
_WEIGHT = [0] * 256
_WEIGHT[ord("[")] = _WEIGHT[ord("{")] = 1
_WEIGHT[ord("]")] = _WEIGHT[ord("}")] = -1


def json_text(value: Any) -> str:
    """Compact JSON text (UTF-8, not ASCII-escaped), the form stored in JSONB and Redis.

    orjson, not the standard library: on the submit path (1,000 rows and events a batch) the
    encoding was a fifth of the API's CPU. Non-string keys become strings, as with `json`.
    """
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def find_bad_value(value: Any, path: str = "$", depth: int = 0) -> str | None:
    """Where a submitted JSON value holds what we refuse to store, or None."""
    if depth > MAX_DEPTH:
        return f"{path}: values may nest at most {MAX_DEPTH} levels deep"
    if isinstance(value, str):
        if "\x00" in value:
            return f"{path}: NUL characters are not allowed"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{path}: lone surrogate characters are not allowed"
    elif isinstance(value, bool):
        return None
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INT:
            return f"{path}: integers must fit in 64 bits"
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return f"{path}: numbers must be finite"
    elif isinstance(value, dict):
        for key, item in value.items():
            problem = find_bad_value(key, path) or find_bad_value(item, f"{path}.{key}", depth + 1)
            if problem:
                return problem
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problem = find_bad_value(item, f"{path}[{index}]", depth + 1)
            if problem:
                return problem
    return None


def _scrub_str(text: str) -> str:
    text = text.replace("\x00", "\ufffd")
    return text.encode("utf-8", "replace").decode("utf-8")


def scrub(value: Any, depth: int = 0) -> Any:
    """A copy of a result that can be stored: bad characters replaced, huge numbers as text,
    anything nested deeper than MAX_DEPTH flattened to its JSON text."""
    if isinstance(value, str):
        return _scrub_str(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if abs(value) <= MAX_SAFE_INT else str(value)
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict | list | tuple) and depth >= MAX_DEPTH:
        return _scrub_str(json.dumps(value, default=str)[:100_000])
    if isinstance(value, dict):
        return {_scrub_str(str(k)): scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(item, depth + 1) for item in value]
    return _scrub_str(str(value))


@dataclass(frozen=True)
class ParsedJson:
    """A JSON text's value, or why there is none (`error`, a short message)."""

    value: Any = None
    error: str | None = None


def json_depth(text: str) -> int:
    """How deep the arrays and objects of a JSON text nest (0 for a scalar), without parsing:
    exact for valid JSON, never less than what a parser reaches before an error in invalid JSON.

    Bulk byte operations only (a few ms a MiB): escaped backslashes and quotes are dropped
    (left to right, as a parser pairs them), then everything but quotes and brackets; what lies
    between a pair of quotes is a string's, and the rest is weighed. UTF-8 never uses these
    ASCII bytes inside a multi-byte character.
    """
    raw = text.encode("utf-8", "surrogatepass")
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Dropping `""` (an empty string, or the gap between two strings with no bracket in it)
    # moves no bracket in or out of a string; most strings go here, cheaply.
    marks = raw.translate(None, _NOT_MARKS).replace(b'""', b"")
    outside = b"".join(marks.split(b'"')[::2])
    return max(accumulate(map(_WEIGHT.__getitem__, outside)), default=0)


def parse_json(text: str, max_depth: int = PARSE_MAX_DEPTH) -> ParsedJson:
    """Parse a JSON text that nests at most `max_depth` levels, else report why not.

    The depth is checked before parsing, so no input can make the parser (or anything that
    later walks the value: `scrub`, pydantic, PostgreSQL's JSONB) recurse too deep. The
    standard library parses: orjson turns integers past 64 bits into lossy floats. A leading
    byte order mark is ignored (RFC 8259 allows it).
    """
    text = text.removeprefix("\ufeff")
    bound = text.count("[") + text.count("{")  # cheap: most texts cannot nest too deep
    if bound > max_depth and json_depth(text) > max_depth:
        return ParsedJson(error=f"JSON nested deeper than {max_depth} levels")
    try:
        return ParsedJson(value=json.loads(text))
    except ValueError as exc:  # JSONDecodeError, and integers too long to convert
        return ParsedJson(error=f"invalid JSON: {exc}"[:200])

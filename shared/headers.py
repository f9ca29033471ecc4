"""Header rules for every header a caller or an agent gives: framing is Outrider's alone."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

FORBIDDEN_HEADER = "forbidden_header"
INVALID_HEADER = "invalid_header"
HEADER_ERROR_CODES = (FORBIDDEN_HEADER, INVALID_HEADER)
MAX_NAME_LENGTH = 100
MAX_HEADERS = 64

# Headers that frame the message, steer the connection or name the destination: aiohttp and
# the egress policy decide these, never a caller (a caller's Transfer-Encoding next to our
# Content-Length is request smuggling). Compared in lower case, `_` read as `-` (CGI-style
# servers read Transfer_Encoding as Transfer-Encoding).
FRAMING_HEADERS = frozenset(
    {
        "transfer-encoding", "content-length", "connection", "keep-alive", "upgrade", "te",
        "trailer", "host", "expect",
    }
)  # fmt: skip
FRAMING_PREFIXES = ("proxy-",)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 5.5: a field value may hold SP and HTAB (between visible characters); every other
# control character (CR and LF above all, NUL, DEL, C1) is refused.
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True)
class HeaderProblem:
    """Why a header is refused: `code` is `forbidden_header` or `invalid_header`; `header`
    names it."""

    code: str
    message: str
    header: str


def is_framing_header(name: str) -> bool:
    """Whether `name` (any case) is one of the headers only Outrider may set."""
    folded = name.lower().replace("_", "-")
    return folded in FRAMING_HEADERS or folded.startswith(FRAMING_PREFIXES)


def _control_character(text: str) -> str | None:
    """The first control character in `text` (C0 but TAB, DEL or C1), or None."""
    if text.isascii():
        found = _ASCII_CONTROL.search(text)
        return found.group() if found else None
    return next((c for c in text if c != "\t" and unicodedata.category(c) == "Cc"), None)


@functools.lru_cache(maxsize=1024)  # names repeat: the worker checks every job's headers
def name_problem(name: str) -> HeaderProblem | None:
    """Why `name` may not be sent as a header name, or None."""
    if not _TOKEN.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        message = (
            f"Header name {name[:MAX_NAME_LENGTH]!r} is not an HTTP token (letters, digits "
            f"and !#$%&'*+-.^_`|~; at most {MAX_NAME_LENGTH} characters)."
        )
        return HeaderProblem(INVALID_HEADER, message, name)
    if is_framing_header(name):
        message = (
            f"Header {name!r} is Outrider's to set: framing, connection and routing headers "
            "(Transfer-Encoding, Content-Length, Connection, Keep-Alive, Upgrade, TE, Trailer, "
            "Host, Expect, Proxy-*) may not be given."
        )
        return HeaderProblem(FORBIDDEN_HEADER, message, name)
    return None


def value_problem(value: str, name: str = "") -> HeaderProblem | None:
    """Why `value` may not be sent as a header value (a control character other than TAB),
    or None."""
    bad = _control_character(value)
    if bad is None:
        return None
    where = f"of header {name!r} " if name else ""
    message = (
        f"The value {where}contains the control character U+{ord(bad):04X}: CR, LF, NUL "
        "and other control characters but TAB are not allowed in headers."
    )
    return HeaderProblem(INVALID_HEADER, message, name)


def first_problem(headers: Iterable[tuple[str, str]]) -> HeaderProblem | None:
    """The first refused header among (name, value) pairs, or None."""
    for name, value in headers:
        problem = name_problem(name) or value_problem(value, name)
        if problem is not None:
            return problem
    return None


def _raise(problem: HeaderProblem) -> None:
    raise PydanticCustomError(problem.code, problem.message, {"header": problem.header})


def check_name(name: str) -> str:
    """A pydantic validator: `name` as given, or a `forbidden_header`/`invalid_header` error."""
    if (problem := name_problem(name)) is not None:
        _raise(problem)
    return name


def check_value(value: str) -> str:
    """A pydantic validator: `value` as given, or an `invalid_header` error."""
    if (problem := value_problem(value)) is not None:
        _raise(problem)
    return value


# What the schema states (the validators also refuse the framing headers, in any spelling).
NAME_PATTERN = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$"
VALUE_PATTERN = r"^[^\x00-\x08\x0a-\x1f\x7f-\x9f]*$"
HeaderName = Annotated[
    str, AfterValidator(check_name), Field(json_schema_extra={"pattern": NAME_PATTERN})
]
HeaderValue = Annotated[
    str, AfterValidator(check_value), Field(json_schema_extra={"pattern": VALUE_PATTERN})
]
HeaderMap = Annotated[
    dict[HeaderName, HeaderValue],
    Field(
        max_length=MAX_HEADERS,
        json_schema_extra={
            "additionalProperties": False,
            "propertyNames": {"pattern": NAME_PATTERN},
        },
    ),
]
"""Headers as a caller gives them (job inputs, agents): each name and value checked."""

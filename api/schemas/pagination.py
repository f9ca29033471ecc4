"""The `cursor` query parameter of the list routes, as the schema states it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from shared.repositories.frontier import PAGE_CURSOR_PATTERN
from shared.repositories.pagination import CURSOR_PATTERN

_HELP = "The previous page's `next_cursor`."
# The pattern is stated, not enforced here: the repositories refuse other cursors with a 400
# `invalid_cursor` (and still read the older base64 ones).
Cursor = Annotated[
    str | None,
    Query(max_length=500, description=_HELP, json_schema_extra={"pattern": CURSOR_PATTERN}),
]
PageCursor = Annotated[
    str | None,
    Query(max_length=500, description=_HELP, json_schema_extra={"pattern": PAGE_CURSOR_PATTERN}),
]

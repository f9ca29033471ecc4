"""Keyset (cursor) pagination on (created_at, id), newest first."""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from shared.errors import InvalidCursor

T = TypeVar("T", bound=Any)


CURSOR_PATTERN = r"^-?[0-9]{1,18}\.[0-9a-f]{32}$"
"""A cursor: the row's time in µs since the epoch, a dot, its id in hex. Opaque to callers,
but any string of this shape is a position (before the first row or after the last one, at
worst), so the schema's pattern is the whole truth about which cursors are accepted."""
_CURSOR = re.compile(CURSOR_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_US = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)
_MAX_US = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    """A cursor pointing just after this row."""
    micros = (created_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}.{row_id.hex}"


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor points at; InvalidCursor if it has neither this shape nor the
    older one (base64 JSON)."""
    if _CURSOR.fullmatch(cursor):
        micros, _, hex_id = cursor.partition(".")
        clamped = min(max(int(micros), _MIN_US), _MAX_US)
        return _EPOCH + timedelta(microseconds=clamped), uuid.UUID(hex=hex_id)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, row_id = json.loads(raw)
        when = datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError("naive timestamp")
        return when.astimezone(UTC), uuid.UUID(row_id)
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor("The cursor is malformed; use a `next_cursor` from a list.") from exc


def after_cursor(
    stmt: Select[T],
    created_col: InstrumentedAttribute[datetime],
    id_col: InstrumentedAttribute[uuid.UUID],
    cursor: str | None,
    limit: int,
) -> Select[T]:
    """Order newest first and continue after the cursor; fetches one extra row to see more."""
    if cursor:
        created, row_id = decode_cursor(cursor)
        stmt = stmt.where(or_(created_col < created, and_(created_col == created, id_col < row_id)))
    return stmt.order_by(created_col.desc(), id_col.desc()).limit(limit + 1)

"""Row ids: UUIDv7 (RFC 9562), time-ordered, for every table's primary key.

A random (v4) id puts each new row's primary-key entry, and every index entry that carries the
id (a job's attempts by `job_id`, say), on a random page of a B-tree as large as the ledger.
With ten million jobs those pages are cold: each insert reads one and, after every checkpoint,
writes the whole 8 KB page to the WAL again (measured: the job's and its attempt's index pages
were a third of the WAL of a job's life at ten million jobs, nothing at ten thousand). A v7 id
starts with the millisecond it was made, so new entries go to the right edge of the index,
whose pages stay hot however large the table grows.

The other 74 bits are random (`os.urandom`), so ids stay unguessable in practice; what a v7 id
gives away is its creation time, which the row's `created_at` shows anyway. Python's `uuid`
module gains `uuid7` in 3.14; this is the same layout for 3.11 (ordered by millisecond, random
within one).
"""

from __future__ import annotations

import os
import time
import uuid

_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62
_MS_MASK = (1 << 48) - 1
_RAND_A_MASK = (1 << 12) - 1
_RAND_B_MASK = (1 << 62) - 1


def new_id() -> uuid.UUID:
    """A fresh UUIDv7: 48 bits of Unix milliseconds, the version, 74 random bits."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (
        (ms & _MS_MASK) << 80
        | _VERSION
        | ((rand >> 64) & _RAND_A_MASK) << 64
        | _VARIANT
        | (rand & _RAND_B_MASK)
    )
    return uuid.UUID(int=value)

"""Row ids are UUIDv7: time-ordered, so new index entries land at the B-tree's right edge."""

from __future__ import annotations

import time
import uuid
from typing import Any, cast

from shared.ids import new_id
from shared.models import Job


def test_new_id_is_a_version_7_uuid_with_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    made = new_id()
    after = time.time_ns() // 1_000_000
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert before <= made.int >> 80 <= after


def test_ids_sort_by_the_millisecond_they_were_made_in_and_never_repeat() -> None:
    ids = []
    for _ in range(5):
        ids += [new_id() for _ in range(2000)]
        time.sleep(0.002)
    assert len(set(ids)) == len(ids)
    stamps = [made.int >> 80 for made in ids]
    assert stamps == sorted(stamps)
    assert stamps[-1] > stamps[0]
    # 74 random bits: within one millisecond the order is random, not a counter.
    same_ms = [made for made in ids if made.int >> 80 == stamps[0]]
    assert len({made.int & ((1 << 62) - 1) for made in same_ms}) == len(same_ms)


def test_every_table_takes_its_ids_from_new_id() -> None:
    defaults = {
        table.name: default.arg.__name__
        for table in Job.metadata.sorted_tables
        for column in table.primary_key.columns
        if (default := cast(Any, column.default)) is not None and callable(default.arg)
    }
    assert defaults, "no table has a Python-side id default"
    assert set(defaults.values()) == {"new_id"}, defaults


def test_new_jobs_get_version_7_ids() -> None:
    from shared.repositories.job import new_job_values

    rows = new_job_values([{"kind": "http"}, {"kind": "fetch"}])
    assert [row["id"].version for row in rows] == [7, 7]

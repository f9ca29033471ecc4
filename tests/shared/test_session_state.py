"""No SQL that needs a database session of its own: behind PgBouncer in transaction pooling
mode each transaction may run on another server connection, so LISTEN/NOTIFY, session-level
advisory locks, SET (but SET LOCAL), temporary tables, PREPARE and cursors WITH HOLD would
silently act on someone else's connection (docs/operations.md, PgBouncer). Locks between
processes are Redis locks; settings are SET LOCAL; notifications go over Redis. (SQL keywords
are written in capitals here, as everywhere in the code.)"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "worker", "shared", "outrider", "migrations")

SESSION_SQL = re.compile(
    r"""(?x)
    \b(?:UN)?LISTEN\s+\w
    | \bNOTIFY\s+\w | pg_notify\s*\(
    | pg_(?:try_)?advisory_lock(?:_shared)?\s*\(
    | ["']\s*SET\s+(?!LOCAL\b)(?:SESSION\s+)?\w+\s*(?:=|\bTO\b)
    | \bset_config\s*\([^)]*\bfalse\s*\)
    | \bCREATE\s+(?:TEMP|TEMPORARY)\s+TABLE\b
    | ["']\s*PREPARE\s+\w
    | \bWITH\s+HOLD\b
    """
)


def test_no_sql_relies_on_a_session() -> None:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if SESSION_SQL.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "SQL that needs its own session (breaks behind PgBouncer):\n" + "\n".join(
        found
    )


def test_the_pattern_catches_what_it_names() -> None:
    for sql in (
        '"LISTEN outrider_events"',
        "SELECT pg_advisory_lock(42)",
        "SELECT pg_try_advisory_lock(1)",
        "\"SET statement_timeout = '1s'\"",
        "'SET SESSION work_mem TO 1'",
        "CREATE TEMP TABLE t (x int)",
        '"PREPARE q AS SELECT 1"',
        "SELECT pg_notify('c', 'x')",
    ):
        assert SESSION_SQL.search(sql), sql
    for sql in (
        "\"SET LOCAL idle_in_transaction_session_timeout = '10s'\"",
        "UPDATE job SET status = 'queued'",
        "SELECT pg_try_advisory_xact_lock(1)",
        'ondelete="SET NULL"',
    ):
        assert not SESSION_SQL.search(sql), sql

"""Seeding a job ledger for the `ledger` scenario: N job rows with their attempts and webhook
deliveries, generated inside PostgreSQL (`INSERT ... SELECT generate_series`, no rows cross
the wire), the way a long-lived installation's tables look.

What a ledger holds (row i of N, deterministic):

- owners: blocks of 5,000 jobs alternate between three other owners and the benchmark's
  owner (half the rows; the oldest block is another owner's, so the retention passes, which
  delete the oldest jobs, do not eat the 10k baseline's only crawl of the benchmark's owner);
  the benchmark owner's jobs go 90 % to its default agent and 10 % to a second agent;
- kinds: 70 % `http`, 27 % `fetch`, 2 % `render`, 1 % `scrape`, and in every block one
  `crawl` whose 100 page jobs (`fetch`) name it as `parent_id`;
- statuses: 90 % succeeded (9 % of them after a retry), 7 % failed after 3 attempts, 3 %
  cancelled before running; no live (queued or running) job: a ledger's history;
- times: created over the 30 days before yesterday, whatever N (the last day, and so the
  last hour the queue view counts, holds only what the measurements add);
- JSON: inputs as users send them, results of the size engines return (about 0.5 KB for
  `http`, 1.3 KB for `fetch` pages: headers, a body or Markdown and links);
- `job_attempt`: one row per attempt (about 1.2 per job); `webhook_delivery`: one delivered
  webhook per ended job of one of the other owners (about 1 in 6 jobs).

Loading is the bulk-load recipe of pg_restore: the three tables' indexes and constraints are
dropped, the rows inserted in chunks on two connections, then the same indexes and constraints
built again (each definition read back from the catalog, so the schema ends as the migrations
made it) and the tables vacuumed and analyzed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import asyncpg

TABLES = ("job", "job_attempt", "webhook_delivery")
BLOCK = 5000  # jobs per owner block; each holds one crawl and its 100 pages
CRAWL_PAGES = 100
SPAN_S = 30 * 86400  # history spread over 30 days...
AGE_S = 86400  # ...ending a day ago
CHUNK = 200_000
CONNECTIONS = 2


@dataclass(frozen=True)
class Ledger:
    """Who owns the seeded rows, and where the history lies."""

    owners: list[uuid.UUID]  # [the benchmark's owner, three others]
    agents: list[uuid.UUID]  # their default agents, in the same order
    second_agent: uuid.UUID  # the benchmark owner's second agent (10 % of its jobs)
    idle_agent: uuid.UUID  # and a third one, without jobs
    rows: int
    seeded_until: float  # epoch: every seeded row was created before this


# Columns computed once per generated row (g), then used by the three inserts.
_ROWS = """
SELECT i,
       {id_of_i} AS id,
       ((i - 1) / {block}) % 2 = 1 AS mine,
       CASE WHEN ((i - 1) / {block}) % 2 = 1 THEN 1 ELSE 2 + ((i - 1) / {block} / 2) % 3 END AS o,
       (i - 1) % {block} AS slot,
       (i * 2654435761) % 1000 AS k,
       ((i * 40503) / 7) % 100 AS s,
       {at_of_i} AS at,
       {parent_id} AS parent_id
FROM generate_series($1::bigint, $2::bigint) AS i
"""

# When row n was created ($3: the end of the history, $4: the number of rows).
_AT = "($3::timestamptz - make_interval(secs => ($4 - ({n})) * {span}::float8 / $4))"
# Row n's id: a UUIDv7 of its creation millisecond, as shared/ids.py makes ids (the random
# part from md5), so the ledger's primary-key order is its time order, as it is in a ledger
# the product wrote. (Random ids, as before migration 0014, age out with retention.)
_V7 = (
    "(lpad(to_hex((extract(epoch FROM {at}) * 1000)::bigint), 12, '0') || '7'"
    " || substr(md5('job' || ({n})), 1, 3) || '8' || substr(md5('job' || ({n})), 4, 15))::uuid"
)


def _id_of(n: str, span: int) -> str:
    return _V7.format(at=_AT.format(n=n, span=span), n=n)


_JOBS = """
SELECT g.id, $5::uuid[] AS owners, g.o, g.mine, g.i, g.slot, g.at, g.parent_id,
       CASE WHEN g.slot = 0 THEN 'crawl' WHEN g.slot <= {pages} THEN 'fetch'
            WHEN g.k < 700 THEN 'http' WHEN g.k < 970 THEN 'fetch'
            WHEN g.k < 990 THEN 'render' ELSE 'scrape' END AS kind,
       CASE WHEN g.slot <= {pages} OR g.s < 90 THEN 'succeeded'
            WHEN g.s < 97 THEN 'failed' ELSE 'cancelled' END AS status,
       CASE WHEN g.slot <= {pages} OR g.s < 90 THEN (CASE WHEN g.s % 10 = 0 THEN 2 ELSE 1 END)
            WHEN g.s < 97 THEN 3 ELSE 0 END AS attempts
FROM ({rows}) AS g
"""

_INSERT = """
WITH j AS ({jobs}),
inserted AS (
  INSERT INTO job (id, owner_id, agent_id, kind, queue, status, input, result, error, attempts,
                   max_attempts, timeout_s, fence, worker_id, lease_expires_at, run_after,
                   priority, idempotency_key, request_hash, created_at, started_at, finished_at,
                   schedule_id, schedule_instant, webhook_url, parent_id)
  SELECT j.id, j.owners[j.o],
         CASE WHEN j.mine AND j.i % 10 = 3 THEN $7::uuid ELSE ($6::uuid[])[j.o] END,
         j.kind,
         CASE WHEN j.kind IN ('render', 'scrape') THEN 'browser' ELSE 'default' END,
         j.status,
         CASE WHEN j.kind = 'http' THEN jsonb_build_object(
                'url', 'https://api' || j.i % 97 || '.example.com/v2/items/' || j.i,
                'method', 'GET', 'headers', jsonb_build_object('accept', 'application/json'))
              WHEN j.kind = 'crawl' THEN jsonb_build_object(
                'url', 'https://site' || j.i % 89 || '.example.org/', 'max_depth', 3,
                'limit', 100, 'page', jsonb_build_object('formats', '["markdown"]'::jsonb))
              ELSE jsonb_build_object(
                'url', 'https://site' || j.i % 89 || '.example.org/docs/page-' || j.i,
                'formats', '["markdown", "links"]'::jsonb) END,
         CASE WHEN j.status <> 'succeeded' THEN NULL
              WHEN j.kind = 'http' THEN jsonb_build_object(
                'status', 200,
                'headers', jsonb_build_object('content-type', 'application/json',
                  'etag', md5(j.i::text), 'date', to_char(j.at, 'Dy, DD Mon YYYY HH24:MI:SS'),
                  'server', 'nginx', 'cache-control', 'private, max-age=0'),
                'json', jsonb_build_object('id', j.i, 'name', 'item ' || md5(j.i || 'n'),
                  'price', j.i % 1000, 'tags', jsonb_build_array(md5(j.i || 't'), 'x'),
                  'updated', j.at),
                'final_url', 'https://api' || j.i % 97 || '.example.com/v2/items/' || j.i,
                'elapsed_ms', j.i % 900)
              WHEN j.kind = 'crawl' THEN jsonb_build_object('pages', jsonb_build_object(
                'discovered', 140, 'succeeded', {pages}, 'failed', 0, 'skipped',
                jsonb_build_object('depth', 40)))
              ELSE jsonb_build_object(
                'url', 'https://site' || j.i % 89 || '.example.org/docs/page-' || j.i,
                'status', 200, 'title', 'Page ' || j.i,
                'markdown', '# Page ' || j.i || E'\n\n' || repeat(md5(j.i || 'm') || ' ', 24),
                'links', jsonb_build_object('internal', jsonb_build_array(
                  '/docs/page-' || j.i + 1, '/docs/page-' || j.i + 2, '/docs/'),
                  'external', '[]'::jsonb)) END,
         CASE WHEN j.status = 'failed' THEN jsonb_build_object('code', 'http_status',
              'message', 'The server answered 503.', 'retryable', true, 'status', 503) END,
         j.attempts, 3, 60, j.attempts,
         CASE WHEN j.attempts > 0 THEN 'bench-host:' || 1000 + j.i % 8 || ':a1b2c3' END,
         NULL, j.at, 5,
         CASE WHEN j.i % 20 = 7 THEN 'idem-' || j.i END,
         md5(j.i || 'r') || md5(j.i || 'q'),
         j.at,
         CASE WHEN j.attempts > 0 THEN j.at + interval '50 ms' END,
         j.at + interval '1200 ms',
         NULL, NULL, NULL,
         CASE WHEN j.slot BETWEEN 1 AND {pages} THEN j.parent_id END
  FROM j
  RETURNING id, owner_id, agent_id, status, attempts, worker_id, created_at, finished_at
),
attempts AS (
  INSERT INTO job_attempt (job_id, fence, number, worker_id, started_at, finished_at, outcome,
                           error_code, error_message)
  SELECT x.id, n, n, x.worker_id, x.created_at + n * interval '50 ms',
         x.created_at + n * interval '400 ms',
         CASE WHEN n < x.attempts THEN 'retrying' ELSE x.status END,
         CASE WHEN n < x.attempts OR x.status = 'failed' THEN 'http_status' END,
         CASE WHEN n < x.attempts OR x.status = 'failed' THEN 'The server answered 503.' END
  FROM inserted AS x, generate_series(1, x.attempts) AS n
)
INSERT INTO webhook_delivery (id, owner_id, job_id, agent_id, event_id, event, source, url,
                              payload, status, attempts, next_attempt_at, last_attempt_at,
                              last_status_code, created_at, delivered_at)
SELECT md5('delivery' || x.id)::uuid, x.owner_id, x.id, x.agent_id, md5('event' || x.id)::uuid,
       'job.' || x.status, 'agent', 'https://hooks.example.net/outrider',
       jsonb_build_object('type', 'job.' || x.status, 'job_id', x.id, 'status', x.status),
       'delivered', 1, NULL, x.finished_at, 200, x.finished_at, x.finished_at
FROM inserted AS x
WHERE x.owner_id = ($5::uuid[])[2]
"""


def insert_sql() -> str:
    rows = _ROWS.format(
        block=BLOCK,
        id_of_i=_id_of("i", SPAN_S),
        at_of_i=_AT.format(n="i", span=SPAN_S),
        parent_id=_id_of(f"i - (i - 1) % {BLOCK}", SPAN_S),  # the block's crawl (slot 0)
    )
    jobs = _JOBS.format(rows=rows, pages=CRAWL_PAGES)
    return _INSERT.format(jobs=jobs, pages=CRAWL_PAGES)


_CONSTRAINTS_SQL = """
SELECT c.conrelid::regclass::text AS tbl, c.conname, pg_get_constraintdef(c.oid) AS def,
       c.contype::text AS contype
FROM pg_constraint c
WHERE c.contype IN ('p', 'u', 'f')
  AND (c.conrelid::regclass::text = ANY($1::text[]) OR c.confrelid::regclass::text = ANY($1))
"""
_INDEXES_SQL = """
SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def
FROM pg_index i
WHERE i.indrelid::regclass::text = ANY($1::text[])
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
"""


async def _drop_schema_extras(conn: asyncpg.Connection) -> tuple[list[str], list[str], list[str]]:
    """Drop the tables' indexes and constraints; the statements that make them again."""
    constraints = await conn.fetch(_CONSTRAINTS_SQL, list(TABLES))
    indexes = await conn.fetch(_INDEXES_SQL, list(TABLES))
    keys: list[str] = []
    fks: list[str] = []
    for row in constraints:
        add = f'ALTER TABLE {row["tbl"]} ADD CONSTRAINT "{row["conname"]}" {row["def"]}'
        (fks if row["contype"] == "f" else keys).append(add)
    for row in sorted(constraints, key=lambda r: r["contype"] != "f"):  # foreign keys first
        await conn.execute(f'ALTER TABLE {row["tbl"]} DROP CONSTRAINT "{row["conname"]}"')
    for row in indexes:
        await conn.execute(f'DROP INDEX "{row["name"]}"')
    return keys, [row["def"] for row in indexes], fks


async def _owners(
    conn: asyncpg.Connection, owner_id: uuid.UUID
) -> tuple[list[uuid.UUID], list[uuid.UUID], uuid.UUID]:
    default = await conn.fetchval(
        "SELECT id FROM agent WHERE owner_id = $1 AND is_default", owner_id
    )
    owners, agents = [owner_id], [default]
    for n in range(3):
        other, agent = uuid.uuid4(), uuid.uuid4()
        await conn.execute(
            "INSERT INTO owner (id, name, created_at) VALUES ($1, $2, now())",
            other,
            f"ledger-owner-{n}",
        )
        await conn.execute(_AGENT, agent, other, "default", True)
        owners.append(other)
        agents.append(agent)
    second = uuid.uuid4()
    await conn.execute(_AGENT, second, owner_id, "second", False)
    await conn.execute(_AGENT, uuid.uuid4(), owner_id, "idle", False)
    return owners, agents, second


_AGENT = """
INSERT INTO agent (id, owner_id, name, is_default, headers, obey_robots, allowed_domains,
                   blocked_domains, secret_names, created_at, updated_at)
VALUES ($1, $2, $3, $4, '{}', true, '[]', '[]', '[]', now(), now())
"""


async def seed(dsn: str, owner_id: uuid.UUID, rows: int, log: bool = True) -> Ledger:
    """Fill an empty, migrated database with `rows` jobs of history (see the module)."""
    started = time.monotonic()
    conn = await asyncpg.connect(dsn)
    try:
        owners, agents, second = await _owners(conn, owner_id)
        seeded_until = float(await conn.fetchval("SELECT extract(epoch FROM now())"))
        keys, indexes, fks = await _drop_schema_extras(conn)
    finally:
        await conn.close()
    t0 = seeded_until - AGE_S
    chunks = [(lo, min(lo + CHUNK - 1, rows)) for lo in range(1, rows + 1, CHUNK)]
    sql = insert_sql()

    async def load() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SET synchronous_commit = off")
            when = await conn.fetchval("SELECT to_timestamp($1)", t0)
            while chunks:
                lo, hi = chunks.pop(0)
                await conn.execute(sql, lo, hi, when, rows, owners, agents, second)
        finally:
            await conn.close()

    await asyncio.gather(*(load() for _ in range(CONNECTIONS)))
    loaded = time.monotonic()
    await _rebuild(dsn, keys, indexes, fks)
    if log:
        print(
            f"ledger: {rows:,} jobs seeded in {time.monotonic() - started:.0f} s"
            f" (insert {loaded - started:.0f} s, indexes, keys and vacuum"
            f" {time.monotonic() - loaded:.0f} s)",
            flush=True,
        )
    idle = await _fetchval(dsn, "SELECT id FROM agent WHERE name = 'idle'")
    return Ledger(owners, agents, second, idle, rows, seeded_until)


async def _fetchval(dsn: str, sql: str) -> uuid.UUID:
    conn = await asyncpg.connect(dsn)
    try:
        value: uuid.UUID = await conn.fetchval(sql)
        return value
    finally:
        await conn.close()


async def _rebuild(dsn: str, keys: list[str], indexes: list[str], fks: list[str]) -> None:
    """Build the dropped keys and indexes (two at a time), then the foreign keys, then
    VACUUM ANALYZE (the visibility map and the planner's statistics a lived-in table has) and
    a CHECKPOINT: the gigabytes the load dirtied are written out before anything is measured,
    not while it is."""
    pending = [*keys, *indexes]

    async def build(statements: list[str]) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SET maintenance_work_mem = '256MB'")
            while statements:
                await conn.execute(statements.pop(0))
        finally:
            await conn.close()

    await asyncio.gather(*(build(pending) for _ in range(CONNECTIONS)))
    await build(list(fks))
    conn = await asyncpg.connect(dsn)
    try:
        for table in TABLES:
            await conn.execute(f"VACUUM (ANALYZE) {table}")
        await conn.execute("ANALYZE")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()

"""Job counts kept with the writes: `job_count` holds signed deltas by (queue, kind, status),
written by triggers on `job` (PostgreSQL), so `outrider_jobs` on /metrics sums a few rows
instead of grouping the whole job table. The reconciler folds the deltas into one row per key
(shared/repositories/job_counts.py).

- INSERT and DELETE: one statement-level trigger each, over the statement's transition table
  (a batch of 1,000 submissions or a retention batch writes a row per key, not per job);
- UPDATE: a row-level trigger that fires only when the status (or queue, or kind) changes
  (claims and outcomes: two delta rows; lease renewals and progress: nothing);
- TRUNCATE: the counts go to zero.

The backfill counts the table once, after the triggers exist, in the migration's transaction:
creating a trigger locks out the job table's writers until it commits, so no write is counted
twice or missed. SQLite keeps counting the job table (no triggers there).

Two indexes for `GET /v1/jobs?kind=` and `?agent_id=`: without them a kind or an agent with
few jobs walked all of the owner's jobs (a rare kind: 0.9 s at a million jobs, 0.1 ms with the
index). On PostgreSQL they are built CONCURRENTLY, so a big job table keeps taking writes.

Revision ID: 0010_ledger
Revises: 0008
Create Date: 2026-12-08 00:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_ledger"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = (
    """
CREATE FUNCTION outrider_job_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_count (queue, kind, status, n)
  SELECT queue, kind, status, count(*) FROM new_rows GROUP BY queue, kind, status;
  RETURN NULL;
END $$
""",
    """
CREATE FUNCTION outrider_job_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_count (queue, kind, status, n)
  SELECT queue, kind, status, -count(*) FROM old_rows GROUP BY queue, kind, status;
  RETURN NULL;
END $$
""",
    """
CREATE FUNCTION outrider_job_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_count (queue, kind, status, n)
  VALUES (OLD.queue, OLD.kind, OLD.status, -1), (NEW.queue, NEW.kind, NEW.status, 1);
  RETURN NULL;
END $$
""",
    """
CREATE FUNCTION outrider_job_count_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM job_count;
  RETURN NULL;
END $$
""",
)

TRIGGERS = (
    "CREATE TRIGGER job_count_insert AFTER INSERT ON job REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION outrider_job_count_insert()",
    "CREATE TRIGGER job_count_delete AFTER DELETE ON job REFERENCING OLD TABLE AS old_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION outrider_job_count_delete()",
    "CREATE TRIGGER job_count_update AFTER UPDATE OF status, queue, kind ON job FOR EACH ROW"
    " WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.queue IS DISTINCT FROM NEW.queue"
    " OR OLD.kind IS DISTINCT FROM NEW.kind)"
    " EXECUTE FUNCTION outrider_job_count_update()",
    "CREATE TRIGGER job_count_truncate AFTER TRUNCATE ON job"
    " FOR EACH STATEMENT EXECUTE FUNCTION outrider_job_count_truncate()",
)

# (name, columns)
INDEXES = (
    ("ix_job_owner_kind_created", ["owner_id", "kind", "created_at", "id"]),
    ("ix_job_agent_created", ["agent_id", "created_at", "id"]),
)

BACKFILL = """
INSERT INTO job_count (queue, kind, status, n)
SELECT queue, kind, status, count(*) FROM job GROUP BY queue, kind, status
"""


def upgrade() -> None:
    op.create_table(
        "job_count",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("queue", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_count")),
    )
    if op.get_bind().dialect.name != "postgresql":
        for name, columns in INDEXES:
            op.create_index(name, "job", columns)
        return
    for statement in (*FUNCTIONS, *TRIGGERS):
        op.execute(statement)
    op.execute(BACKFILL)
    with op.get_context().autocommit_block():
        for name, columns in INDEXES:
            op.create_index(name, "job", columns, postgresql_concurrently=True)


def downgrade() -> None:
    for name, _columns in INDEXES:
        op.drop_index(name, table_name="job")
    if op.get_bind().dialect.name == "postgresql":
        for name in ("insert", "delete", "update", "truncate"):
            op.execute(f"DROP TRIGGER job_count_{name} ON job")
            op.execute(f"DROP FUNCTION outrider_job_count_{name}()")
    op.drop_table("job_count")

"""Partial job indexes: the idempotency, schedule-instant and finished-at indexes only hold the
rows they are for. Most jobs have no idempotency key and no schedule, and a job is unfinished
for most of its writes; every write of a job row (insert, claim, outcome) skipped these entries
for nothing. Lookups and uniqueness are unchanged (NULLs were never unique or looked up).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 18:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (name, columns, unique, the rows it holds)
INDEXES = (
    ("ix_job_owner_idempotency", ["owner_id", "idempotency_key"], True, "idempotency_key"),
    ("ix_job_schedule_instant", ["schedule_id", "schedule_instant"], True, "schedule_id"),
    ("ix_job_finished_at", ["finished_at"], False, "finished_at"),
)


def upgrade() -> None:
    for name, columns, unique, column in INDEXES:
        where = sa.text(f"{column} IS NOT NULL")
        op.drop_index(name, table_name="job")
        op.create_index(
            name, "job", columns, unique=unique, postgresql_where=where, sqlite_where=where
        )


def downgrade() -> None:
    for name, columns, unique, _column in INDEXES:
        op.drop_index(name, table_name="job")
        op.create_index(name, "job", columns, unique=unique)

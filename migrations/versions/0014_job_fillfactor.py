"""The job table keeps 30 % of each page free for the row's later versions (fillfactor 70).

A job row is written three times (submitted, claimed, its outcome with the result). With
every page filled, each update moves the row to another page, and in a large ledger that page
is cold: it is read in and, once per checkpoint, written whole to the WAL. Measured at ten
million jobs: about 11 KB of full-page images per job from the job table's updates alone;
with the room, the updates stay on the insert's page (benchmarks/scenarios_ledger.py,
docs/scaling.md). Only pages written from now on get the room: no table rewrite. PostgreSQL
only (SQLite has no fillfactor).

Revision ID: 0014_job_fillfactor
Revises: 0013_operate2
Create Date: 2026-12-08 03:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014_job_fillfactor"
down_revision: str | None = "0013_operate2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE job SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE job RESET (fillfactor)")

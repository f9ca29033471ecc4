"""Per-agent `max_concurrency`: jobs of the agent running at once (worker/queue_worker.py);
a job's `bytes_fetched`: the bytes its attempts read (GET /v1/usage).

Revision ID: 0013_operate2
Revises: 0012_proxies
Create Date: 2026-12-07 23:59:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_operate2"
down_revision: str | None = "0012_proxies"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("agent", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_concurrency", sa.Integer(), nullable=True))
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bytes_fetched", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_column("bytes_fetched")
    with op.batch_alter_table("agent", schema=None) as batch_op:
        batch_op.drop_column("max_concurrency")

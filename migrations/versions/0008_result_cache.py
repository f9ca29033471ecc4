"""The result cache: a page's result per owner and key, for `max_age_s`.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 21:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "result_cache",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("cache_key", sa.String(length=64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column(
            "result", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["owner.id"],
            name=op.f("fk_result_cache_owner_id_owner"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_result_cache")),
    )
    with op.batch_alter_table("result_cache", schema=None) as batch_op:
        batch_op.create_index(
            "ix_result_cache_owner_id_cache_key", ["owner_id", "cache_key"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_result_cache_created_at"), ["created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("result_cache", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_result_cache_created_at"))
        batch_op.drop_index("ix_result_cache_owner_id_cache_key")
    op.drop_table("result_cache")

"""Crawl frontier: `job.parent_id` (a crawl's pages name it), the `crawl` header row and the
`crawl_page` frontier (one row per crawl and normalized URL).

Revision ID: 0007
Revises: 0009 (main had 0009 on 0006 by the time this branch merged it)
Create Date: 2026-12-07 20:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("parent_id", sa.Uuid(), nullable=True))
    where = sa.text("parent_id IS NOT NULL")
    op.create_index(
        "ix_job_parent_created",
        "job",
        ["parent_id", "created_at", "id"],
        postgresql_where=where,
        sqlite_where=where,
    )
    op.create_table(
        "crawl",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("taken", sa.Integer(), nullable=False),
        sa.Column("refills", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["job.id"], name="fk_crawl_job_id_job", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", name="pk_crawl"),
    )
    op.create_table(
        "crawl_page",
        sa.Column("id", BIGINT, autoincrement=True, nullable=False),
        sa.Column("crawl_id", sa.Uuid(), nullable=False),
        sa.Column("url_key", sa.String(64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("found_on", sa.Text(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("skipped_because", sa.String(16), nullable=True),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["crawl_id"], ["job.id"], name="fk_crawl_page_crawl_id_job", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_crawl_page"),
        sa.UniqueConstraint("crawl_id", "url_key", name="uq_crawl_page_crawl_id_url_key"),
    )
    op.create_index(
        "ix_crawl_page_crawl_id_state_depth_id", "crawl_page", ["crawl_id", "state", "depth", "id"]
    )
    op.create_index("ix_crawl_page_crawl_id_id", "crawl_page", ["crawl_id", "id"])
    job_set = sa.text("job_id IS NOT NULL")
    op.create_index(
        "ix_crawl_page_job_id",
        "crawl_page",
        ["job_id"],
        postgresql_where=job_set,
        sqlite_where=job_set,
    )


def downgrade() -> None:
    op.drop_table("crawl_page")
    op.drop_table("crawl")
    op.drop_index("ix_job_parent_created", table_name="job")
    with op.batch_alter_table("job") as batch:
        batch.drop_column("parent_id")

"""Schedules: schedule, schedule_run (unique per instant), job.schedule_id / schedule_instant.

`job.schedule_id` is a foreign key on PostgreSQL only. On SQLite a new foreign key on `job`
means rebuilding the table (batch mode), and dropping the old table with foreign keys on
cascades into `job_attempt`; the columns are added and dropped in place instead (ALTER TABLE
ADD/DROP COLUMN, SQLite 3.35+). Schedules are soft-deleted, so the link never dangles.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
ACTIVE = sa.text("status IN ('queued', 'running')")


def _is_postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    op.create_table(
        "schedule",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("job", JSON, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("overlap", sa.String(length=16), nullable=False),
        sa.Column("misfire", sa.String(length=16), nullable=False),
        sa.Column("next_fire_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("missed_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owner.id"], name=op.f("fk_schedule_owner_id_owner"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule")),
    )
    op.create_index(
        "ix_schedule_owner_created", "schedule", ["owner_id", "created_at", "id"], unique=False
    )
    op.create_index(
        "ix_schedule_enabled_next_fire_at", "schedule", ["enabled", "next_fire_at"], unique=False
    )
    op.create_table(
        "schedule_run",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("schedule_id", sa.Uuid(), nullable=False),
        sa.Column("instant", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("skipped_because", sa.String(length=64), nullable=True),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["job.id"], name=op.f("fk_schedule_run_job_id_job"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedule.id"],
            name=op.f("fk_schedule_run_schedule_id_schedule"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_run")),
        sa.UniqueConstraint(
            "schedule_id", "instant", name=op.f("uq_schedule_run_schedule_id_instant")
        ),
    )
    op.add_column("job", sa.Column("schedule_id", sa.Uuid(), nullable=True))
    op.add_column("job", sa.Column("schedule_instant", sa.DateTime(timezone=True), nullable=True))
    if _is_postgres():
        op.create_foreign_key(
            op.f("fk_job_schedule_id_schedule"),
            "job",
            "schedule",
            ["schedule_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.create_index(
        "ix_job_schedule_instant", "job", ["schedule_id", "schedule_instant"], unique=True
    )
    op.create_index(
        "ix_job_schedule_active",
        "job",
        ["schedule_id"],
        unique=False,
        postgresql_where=ACTIVE,
        sqlite_where=ACTIVE,
    )


def downgrade() -> None:
    op.drop_index("ix_job_schedule_active", table_name="job")
    op.drop_index("ix_job_schedule_instant", table_name="job")
    if _is_postgres():
        op.drop_constraint(op.f("fk_job_schedule_id_schedule"), "job", type_="foreignkey")
    op.drop_column("job", "schedule_instant")
    op.drop_column("job", "schedule_id")
    op.drop_table("schedule_run")
    op.drop_index("ix_schedule_enabled_next_fire_at", table_name="schedule")
    op.drop_index("ix_schedule_owner_created", table_name="schedule")
    op.drop_table("schedule")

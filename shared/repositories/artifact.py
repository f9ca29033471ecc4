"""Artifacts: files a job produced (screenshots). Owner-scoped; the bytes live in the row."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import NotFound
from shared.ids import new_id
from shared.models import Artifact, utcnow


async def insert_artifact(
    session: AsyncSession,
    *,
    owner_id: uuid.UUID,
    job_id: uuid.UUID,
    kind: str,
    content_type: str,
    data: bytes,
) -> Artifact:
    """Store a job's file; the caller has already capped its size."""
    artifact = Artifact(
        id=new_id(),
        owner_id=owner_id,
        job_id=job_id,
        kind=kind,
        content_type=content_type,
        size=len(data),
        data=data,
        created_at=utcnow(),
    )
    session.add(artifact)
    await session.flush()
    return artifact


async def get_artifact(
    session: AsyncSession, owner_id: uuid.UUID, artifact_id: uuid.UUID
) -> Artifact:
    """The owner's artifact; NotFound for a missing or foreign one alike."""
    artifact = await session.scalar(
        select(Artifact).where(Artifact.id == artifact_id, Artifact.owner_id == owner_id)
    )
    if artifact is None:
        raise NotFound("Artifact not found.")
    return artifact

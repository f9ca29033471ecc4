"""Artifacts: the files jobs produced (a `render` job's screenshot), served to their owner."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response

from api.deps import PrincipalDep, StateDep
from api.errors import error_responses
from shared.repositories.artifact import get_artifact

router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"])

_EXTENSIONS = {"image/png": ".png"}

_OK: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file's bytes, with its content type (screenshots are PNG).",
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.get(
    "/{artifact_id}",
    response_class=Response,
    responses={**_OK, **error_responses(404, 422)},
)
async def download_artifact(
    artifact_id: uuid.UUID, state: StateDep, principal: PrincipalDep
) -> Response:
    """The bytes of one of the caller's artifacts (e.g. `result.screenshot.artifact_id`)."""
    async with state.sessionmaker() as session:
        artifact = await get_artifact(session, principal.owner_id, artifact_id)
    ext = _EXTENSIONS.get(artifact.content_type, "")
    return Response(
        content=artifact.data,
        media_type=artifact.content_type,
        headers={
            "Cache-Control": "private, max-age=3600",
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f'inline; filename="{artifact.kind}-{artifact.id}{ext}"',
        },
    )

"""Health: /healthz (the process is up) and /readyz (database and Redis reachable)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import StateDep
from api.schemas.health import Health

router = APIRouter(tags=["health"])
CHECK_TIMEOUT_S = 2.0


@router.get("/healthz", response_model=Health, summary="The API process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="Database and Redis are reachable",
    responses={503: {"model": Health, "description": "A dependency is unreachable."}},
)
async def readyz(state: StateDep) -> JSONResponse:
    checks: dict[str, str] = {}

    async def database() -> None:
        async with state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def redis() -> None:
        await state.redis.ping()

    for name, probe in (("database", database), ("redis", redis)):
        try:
            await asyncio.wait_for(probe(), CHECK_TIMEOUT_S)
            checks[name] = "ok"
        except Exception as exc:  # any failure means not ready; say which
            checks[name] = f"unavailable: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    headers = None if ok else {"Retry-After": "5"}
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503, headers=headers)

"""Bare baseline for the submit scenario: FastAPI + pydantic + arq `enqueue_job`.

No auth, no database: the least a queue front door can do. Run with the same uvicorn
settings as `outrider api`:  BARE_REDIS_URL=... uvicorn benchmarks.bare_submit_app:app
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from arq.connections import ArqRedis, RedisSettings, create_pool
from fastapi import FastAPI
from pydantic import BaseModel

pool: ArqRedis | None = None


class HttpInput(BaseModel):
    url: str
    method: str = "GET"


class Spec(BaseModel):
    kind: Literal["http"]
    input: HttpInput


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    global pool
    pool = await create_pool(RedisSettings.from_dsn(os.environ["BARE_REDIS_URL"]))
    yield
    await pool.aclose()


app = FastAPI(lifespan=lifespan)


@app.post("/v1/jobs", status_code=202)
async def submit(spec: Spec) -> dict[str, Any]:
    assert pool is not None
    job_id = str(uuid.uuid4())
    await pool.enqueue_job("run_job", job_id, _job_id=job_id, _queue_name="bare")
    return {"id": job_id, "kind": spec.kind, "status": "queued", "input": spec.input.model_dump()}

"""Test helpers: a local target HTTP server, and polling for a job's state."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web


@dataclass
class TargetServer:
    """A loopback server. Routes:

    /ok             200 text
    /json           200 JSON echoing method, headers, query and body
    /status/{code}  that status
    /slow?s=N       200 after N seconds
    /flaky/{key}?fail=N&status=S   S (default 503) for the first N calls per key, then 200
    /retry-after/{key}?s=N          429 with Retry-After: N once per key, then 200
    /redirect?to=URL  302 to URL
    """

    base_url: str
    hits: Counter[str] = field(default_factory=Counter)
    seen_headers: list[dict[str, str]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base_url + path


def _app(server: TargetServer) -> web.Application:
    async def count(request: web.Request) -> None:
        server.hits[request.path] += 1
        server.seen_headers.append(dict(request.headers))

    async def ok(request: web.Request) -> web.Response:
        await count(request)
        return web.Response(text="ok")

    async def echo(request: web.Request) -> web.Response:
        await count(request)
        body = await request.text()
        return web.json_response(
            {
                "method": request.method,
                "headers": dict(request.headers),
                "query": dict(request.query),
                "body": body,
            }
        )

    async def status(request: web.Request) -> web.Response:
        await count(request)
        return web.Response(status=int(request.match_info["code"]), text="status")

    async def slow(request: web.Request) -> web.Response:
        await count(request)
        await asyncio.sleep(float(request.query.get("s", "1")))
        return web.Response(text="slow")

    async def flaky(request: web.Request) -> web.Response:
        await count(request)
        key = "flaky:" + request.match_info["key"]
        fail = int(request.query.get("fail", "1"))
        if server.hits[key] < fail:
            server.hits[key] += 1
            return web.Response(status=int(request.query.get("status", "503")), text="flaky")
        return web.Response(text="recovered")

    async def retry_after(request: web.Request) -> web.Response:
        await count(request)
        key = "retry-after:" + request.match_info["key"]
        if server.hits[key] == 0:
            server.hits[key] += 1
            seconds = request.query.get("s", "1")
            return web.Response(status=429, headers={"Retry-After": seconds}, text="slow down")
        return web.Response(text="thanks")

    async def redirect(request: web.Request) -> web.Response:
        await count(request)
        raise web.HTTPFound(request.query["to"])

    app = web.Application()
    app.router.add_route("*", "/ok", ok)
    app.router.add_route("*", "/json", echo)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/slow", slow)
    app.router.add_get("/flaky/{key}", flaky)
    app.router.add_get("/retry-after/{key}", retry_after)
    app.router.add_route("*", "/redirect", redirect)
    return app


@contextlib.asynccontextmanager
async def serve_aiohttp(
    app: web.Application, host: str = "127.0.0.1", **runner_options: Any
) -> AsyncIterator[str]:
    """An aiohttp app on a free port of `host` for the duration of the block; yields its base
    URL. (tests/conftest.py `serve_on_loopback` does the same for an ASGI app.)"""
    runner = web.AppRunner(app, access_log=None, **runner_options)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def start_target_server(
    host: str = "127.0.0.1", **runner_options: Any
) -> AsyncIterator[TargetServer]:
    """Serve the target app on a free loopback port."""
    server = TargetServer(base_url="")
    async with serve_aiohttp(_app(server), host, **runner_options) as server.base_url:
        yield server


TERMINAL = {"succeeded", "failed", "cancelled"}


async def wait_for_job(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    job_id: str,
    statuses: set[str] = TERMINAL,
    timeout_s: float = 20.0,
) -> dict[str, Any]:
    """Poll until the job reaches one of `statuses`; fail with its last state if not."""
    deadline = time.monotonic() + timeout_s
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await client.get(f"/v1/jobs/{job_id}", headers=headers)
        job = response.json()
        if job.get("status") in statuses:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach {statuses} in {timeout_s}s: {job}")


def http_job(url: str, **input_fields: Any) -> dict[str, Any]:
    """A spec for an `http` job."""
    return {"kind": "http", "input": {"url": url, **input_fields}}

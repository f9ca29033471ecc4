"""Outrider's MCP server on its two transports: stdio (`outrider mcp`, for desktop agents and
IDEs: it talks to a running API over HTTP with OUTRIDER_API_KEY) and streamable HTTP at `/mcp`
on the API itself (`mount`), where each request's Bearer key is checked as the API checks it
and every tool call runs with that key, in-process, so it sees only that key's owner's jobs.

The HTTP transport is stateless and answers JSON (no session to keep between requests, so any
API process can answer any call).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from mcp.server.mcpserver import Context
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from api.deps import authenticate
from api.errors import OUTAGE_ERRORS
from outrider.mcp_tools import build_server
from outrider_client import AsyncOutrider
from shared.errors import AppError, ServiceUnavailable

MCP_PATH = "/mcp"
INTERNAL_URL = "http://outrider.internal"


async def run_stdio(url: str | None, key: str | None) -> None:
    """Serve MCP on stdin/stdout until the client closes it; tools call the API at `url`."""
    async with AsyncOutrider(url, key) as client:

        @contextlib.asynccontextmanager
        async def connect(ctx: Context) -> AsyncIterator[AsyncOutrider]:
            yield client

        await build_server(connect).run_stdio_async()


def mount(app: FastAPI) -> None:
    """Serve MCP over streamable HTTP at /mcp on `app`, behind the API's Bearer keys."""

    @contextlib.asynccontextmanager
    async def connect(ctx: Context) -> AsyncIterator[AsyncOutrider]:
        authorization = (ctx.headers or {}).get("authorization", "")
        key = authorization.partition(" ")[2]
        transport = httpx.ASGITransport(app=app)
        async with AsyncOutrider(INTERNAL_URL, key, transport=transport, max_retries=0) as client:
            yield client

    server = build_server(connect)
    # Builds the SDK's session manager (the app it returns is not used: the route below is
    # ours, behind the API's authentication). No DNS-rebinding check: every request needs an
    # API key, which a page in a browser does not have.
    server.streamable_http_app(
        json_response=True,
        stateless_http=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    manager = server.session_manager
    app.router.routes.append(
        Route(MCP_PATH, endpoint=_Endpoint(manager), methods=["GET", "POST", "DELETE"])
    )
    serve_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with serve_lifespan(app), manager.run():
            yield

    app.router.lifespan_context = lifespan


class _Endpoint:
    """The /mcp route: the API's authentication, then the SDK's transport."""

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self.manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await authenticate(Request(scope, receive))
        except OUTAGE_ERRORS as exc:
            error: AppError = ServiceUnavailable("A backing service is unavailable.")
            await _error(error, scope, receive, send, exc)
            return
        except AppError as exc:
            await _error(exc, scope, receive, send, exc)
            return
        await self.manager.handle_request(scope, receive, send)


async def _error(
    error: AppError, scope: Scope, receive: Receive, send: Send, cause: BaseException
) -> None:
    headers = {"WWW-Authenticate": "Bearer"} if error.status_code == 401 else {}
    if error.status_code == 503:
        headers["Retry-After"] = "1"
    response = JSONResponse(error.body(), status_code=error.status_code, headers=headers)
    await response(scope, receive, send)

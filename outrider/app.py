"""The API as `outrider api` and `outrider dev` serve it: api/'s app with MCP mounted at /mcp."""

from __future__ import annotations

from fastapi import FastAPI

from api.app import create_app as create_api
from outrider.mcp_server import mount
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """The HTTP API and, at /mcp, the MCP server (streamable HTTP) over the same keys."""
    app = create_api(settings)
    mount(app)
    return app

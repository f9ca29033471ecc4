"""Helpers for the API tests: the error-shape assertion and clients built from other settings."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from shared.settings import Settings


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert the status and the one error shape `{"error": {"code", "message", "details"}}`."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}, body
    assert error["code"] == code, body
    assert isinstance(error["message"], str), body
    assert error["message"], body
    return error


@contextlib.asynccontextmanager
async def api_client(settings: Settings, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The API in-process, built from `settings` with `overrides` (lifespan included)."""
    from api.app import create_app

    app = create_app(settings.model_copy(update=overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http


def closed_port_url(path: str = "/") -> str:
    """A loopback URL nothing listens on: accepted at submit, never really fetched."""
    return f"http://127.0.0.1:9{path}"

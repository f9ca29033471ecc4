"""Fixtures for worker tests: a target server that lets go of abandoned requests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.helpers import TargetServer, _app


@pytest.fixture
async def hangup_target() -> AsyncIterator[TargetServer]:
    """Like `target`, but a handler whose client hung up is cancelled.

    aiohttp otherwise lets a /slow handler sleep on after the worker dropped the request (a
    timeout, a cancel, a shutdown), and the server's teardown waits for it.
    """
    server = TargetServer(base_url="")
    runner = web.AppRunner(_app(server), access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.base_url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()

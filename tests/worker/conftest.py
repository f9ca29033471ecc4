"""Fixtures for worker tests: a target server that lets go of abandoned requests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.settings import Settings
from tests.helpers import TargetServer, start_target_server
from tests.worker.proxy_support import forget_proxies


@pytest.fixture
async def hangup_target() -> AsyncIterator[TargetServer]:
    """Like `target`, but a handler whose client hung up is cancelled.

    aiohttp otherwise lets a /slow handler sleep on after the worker dropped the request (a
    timeout, a cancel, a shutdown), and the server's teardown waits for it.
    """
    async with start_target_server(handler_cancellation=True) as server:
        yield server


@pytest.fixture
async def proxy_redis(settings: Settings) -> str:
    """The workers' Redis URL, with no proxy benched, counted or stuck from an earlier test."""
    await forget_proxies(settings.resolved_redis_url)
    return settings.resolved_redis_url

"""Fault tests reuse the real-process cluster of tests/e2e, plus a Redis they may kill and a
proxy to PostgreSQL they may cut."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.e2e.conftest import start_cluster as start_cluster
from tests.faults.proxy import TcpProxy
from tests.faults.redis_server import RedisServer


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A redis-server of this test's own. Request it before `start_cluster`, so that it
    outlives the processes using it (fixtures are torn down in reverse order)."""
    server = RedisServer(tmp_path)
    await server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.kill()


@pytest.fixture
def pg_proxy(database_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A cuttable TCP proxy in front of the test PostgreSQL, and the database URL through it.
    Request it before `start_cluster`, so that it outlives the processes using it."""
    url = make_url(database_url)
    assert url.get_backend_name() == "postgresql", "mark the test with pytest.mark.postgres"
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxy.start()
    yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    proxy.stop()

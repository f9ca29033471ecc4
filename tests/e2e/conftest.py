"""Fixtures that run Outrider as real processes (see tests/e2e/cluster.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Protocol

import pytest
from playwright.async_api import Browser, async_playwright

from shared.settings import Settings
from tests.e2e.cluster import Cluster, process_env


class StartCluster(Protocol):
    def __call__(
        self,
        workers: int = 2,
        concurrency: int = 10,
        *,
        database_url: str | None = None,
        redis_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Awaitable[Cluster]: ...


@pytest.fixture
async def start_cluster(
    database_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[StartCluster]:
    """Start `outrider api` and N `outrider worker` processes (the session database and Redis
    unless given others), wait for /readyz and for every worker's liveness key. At teardown
    everything is stopped, and the test fails if any process of the trees survives."""
    clusters: list[Cluster] = []

    async def start(
        workers: int = 2,
        concurrency: int = 10,
        *,
        database_url: str | None = None,
        redis_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Cluster:
        workdir = tmp_path / f"cluster-{len(clusters)}"
        workdir.mkdir()
        cluster = Cluster(
            env=process_env(
                workdir / "data",
                database_url or session_database_url,
                redis_url or session_redis_url,
                **(env or {}),
            ),
            workdir=workdir,
        )
        clusters.append(cluster)
        cluster.start_api()
        for _ in range(workers):
            cluster.start_worker(concurrency)
        await cluster.wait_ready()
        await cluster.wait_workers()
        return cluster

    session_database_url, session_redis_url = database_url, redis_url
    yield start
    survivors = [survivor for cluster in clusters for survivor in cluster.stop()]
    assert not survivors, f"processes left after teardown: {survivors}"


@pytest.fixture
async def browser(settings: Settings) -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, for the dashboard's tests."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=settings.chromium_path,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            headless=True,
            chromium_sandbox=False,
        )
        try:
            yield launched
        finally:
            await launched.close()

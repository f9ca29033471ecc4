"""The per-host gate against a real Redis: the paced schedule, leases, backoff, the shared limit."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from worker.host_gate import HostGate, HostLimits

NO_LIMIT = HostLimits(rate_per_s=0, concurrency=0)
LEASE_S = 30.0


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def new_host() -> str:
    return f"h{uuid.uuid4().hex[:10]}.test:443"


def token() -> str:
    return uuid.uuid4().hex


async def test_pace_reserves_near_slots_and_refuses_far_ones(redis: Redis) -> None:
    gate, host, limits = HostGate(redis), new_host(), HostLimits(rate_per_s=2, concurrency=0)

    first = await gate.admit(host, token(), limits, max_wait_s=0, lease_s=LEASE_S)
    refused = await gate.admit(host, token(), limits, max_wait_s=0, lease_s=LEASE_S)
    second = await gate.admit(host, token(), limits, max_wait_s=1.0, lease_s=LEASE_S)
    third = await gate.admit(host, token(), limits, max_wait_s=1.0, lease_s=LEASE_S)
    later = [await gate.admit(host, token(), limits, max_wait_s=1.0, lease_s=LEASE_S)]
    later.append(await gate.admit(host, token(), limits, max_wait_s=1.0, lease_s=LEASE_S))

    assert (first.granted, first.reason, first.wait_s) == (True, "ok", 0)
    assert (refused.granted, refused.reason) == (False, "host_rate")
    assert 0.4 < refused.wait_s <= 0.5
    # Reserved slots are exactly one interval apart on Redis' clock.
    assert second.granted
    assert second.at_s - first.at_s == pytest.approx(0.5, abs=1e-6)
    assert third.granted
    assert third.at_s - first.at_s == pytest.approx(1.0, abs=1e-6)
    # Turned-away requests are told to come back one interval apart, not all at once.
    assert [a.granted for a in later] == [False, False]
    assert later[0].at_s - first.at_s == pytest.approx(1.5, abs=1e-6)
    assert later[1].at_s - first.at_s == pytest.approx(2.0, abs=1e-6)


async def test_burst_lets_that_many_go_at_once(redis: Redis) -> None:
    gate, host = HostGate(redis), new_host()
    limits = HostLimits(rate_per_s=1, concurrency=0, burst=3)

    answers = [
        await gate.admit(host, token(), limits, max_wait_s=0, lease_s=LEASE_S) for _ in range(4)
    ]

    assert [a.granted for a in answers] == [True, True, True, False]
    assert answers[3].reason == "host_rate"
    assert 0.9 < answers[3].wait_s <= 1.0


async def test_different_rates_share_one_schedule(redis: Redis) -> None:
    gate, host = HostGate(redis), new_host()
    slow, fast = HostLimits(rate_per_s=0.5, concurrency=0), HostLimits(10, 0)

    await gate.admit(host, token(), slow, max_wait_s=0, lease_s=LEASE_S)
    after_slow = await gate.admit(host, token(), fast, max_wait_s=0, lease_s=LEASE_S)

    # The slow agent's request holds the host for 2 s, for everyone.
    assert (after_slow.granted, after_slow.reason) == (False, "host_rate")
    assert 1.9 < after_slow.wait_s <= 2.0


async def test_concurrency_leases(redis: Redis) -> None:
    gate, host, limits = HostGate(redis), new_host(), HostLimits(rate_per_s=0, concurrency=2)
    one, two, three = token(), token(), token()

    first = await gate.admit(host, one, limits, max_wait_s=0, lease_s=LEASE_S)
    second = await gate.admit(host, two, limits, max_wait_s=0, lease_s=LEASE_S)
    full = await gate.admit(host, three, limits, max_wait_s=0, lease_s=LEASE_S)
    await gate.release(host, one)
    freed = await gate.admit(host, three, limits, max_wait_s=0, lease_s=LEASE_S)

    assert first.leased
    assert second.leased
    assert (full.granted, full.reason) == (False, "host_concurrency")
    assert freed.granted
    assert freed.leased


async def test_a_dead_holders_lease_frees_itself(redis: Redis) -> None:
    gate, host, limits = HostGate(redis), new_host(), HostLimits(rate_per_s=0, concurrency=1)

    assert (await gate.admit(host, token(), limits, max_wait_s=0, lease_s=0.3)).granted
    assert not (await gate.admit(host, token(), limits, max_wait_s=0, lease_s=0.3)).granted
    await asyncio.sleep(0.4)  # the holder never released nor renewed: it "died"

    assert (await gate.admit(host, token(), limits, max_wait_s=0, lease_s=0.3)).granted


async def test_holding_renews_the_lease_until_the_block_ends(redis: Redis) -> None:
    gate, host, limits = HostGate(redis), new_host(), HostLimits(rate_per_s=0, concurrency=1)
    mine = token()
    assert (await gate.admit(host, mine, limits, max_wait_s=0, lease_s=0.3)).granted

    async with gate.holding(host, mine, 0.3):
        await asyncio.sleep(0.8)  # well past the lease: only renewal keeps it
        inside = await gate.admit(host, token(), limits, max_wait_s=0, lease_s=0.3)
    after = await gate.admit(host, token(), limits, max_wait_s=0, lease_s=0.3)

    assert (inside.granted, inside.reason) == (False, "host_concurrency")
    assert after.granted


async def test_backoff_holds_the_host_and_never_shortens(redis: Redis) -> None:
    gate, host = HostGate(redis), new_host()

    left = await gate.back_off(host, 2.0)
    still = await gate.back_off(host, 0.5)
    refused = await gate.admit(host, token(), NO_LIMIT, max_wait_s=1.0, lease_s=LEASE_S)
    waited = await gate.admit(host, token(), NO_LIMIT, max_wait_s=3.0, lease_s=LEASE_S)

    assert 1.9 < left <= 2.0
    assert 1.9 < still <= 2.0
    assert (refused.granted, refused.reason) == (False, "host_backoff")
    assert 1.8 < refused.wait_s <= 2.0
    assert waited.granted
    assert 1.8 < waited.wait_s <= 2.0


async def test_rate_limit_is_shared_by_independent_clients(redis_url: str) -> None:
    """Three clients (think: three worker processes), eight eager requesters each, 3 s."""
    rate, host, duration_s = 2.0, new_host(), 3.0
    limits = HostLimits(rate_per_s=rate, concurrency=0)
    clients = [Redis.from_url(redis_url) for _ in range(3)]
    grants: list[float] = []
    deadline = time.monotonic() + duration_s

    async def requester(gate: HostGate) -> None:
        while time.monotonic() < deadline:
            answer = await gate.admit(host, token(), limits, max_wait_s=0.6, lease_s=LEASE_S)
            if answer.granted:
                grants.append(answer.at_s)
            await asyncio.sleep(answer.wait_s if answer.granted else min(answer.wait_s, 0.05))

    try:
        await asyncio.gather(*(requester(HostGate(c)) for c in clients for _ in range(8)))
    finally:
        for client in clients:
            await client.aclose()

    grants.sort()
    per_window = [sum(1 for g in grants if start <= g < start + 1.0) for start in grants]
    assert max(per_window) <= rate, grants
    assert len(grants) >= duration_s * rate, "the limit let too little through"

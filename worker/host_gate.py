"""Per-host politeness shared by every worker through Redis: a pace, a concurrency cap, a backoff.

A host is shared/urls.py's `host_key`, `host:port` in the host's one spelling with the default
port filled in: `http://a.com` and `https://a.com` are two hosts, `http://127.1` and
`http://127.0.0.1:80` one. Its keys, a contract every worker must agree on, put the host
in braces so that one script's keys share a Redis Cluster slot (times in µs of Redis' clock):

    outrider:host:{h}:tat         the host's schedule (GCRA "theoretical arrival time")
    outrider:host:{h}:queue       the next return time handed to a turned-away request
    outrider:host:{h}:leases      sorted set of in-flight requests: token -> lease expiry
    outrider:host:{h}:not_before  no request before this time (a 429/503 Retry-After)

The pace is a token bucket in its GCRA form: one number per host, no refill arithmetic. A
request at rate r occupies 1/r s of the host's schedule; it may go once the schedule is at
most (burst - 1)/r s ahead of now. So with burst 1 (the default) requests are spaced at least
1/r s apart and any 1 s window holds at most ceil(r) of them; with burst b, b may go at once
after a quiet spell, and a window of w s holds at most b - 1 + ceil(r * w). The rate is the
caller's, so agents with different rates share one schedule: the host never sees more than the
fastest of them, and each is paced at its own. The concurrency cap works the same way: it
counts every in-flight request to the host, and the caller's limit applies.

Admission is one Lua script, atomic, on Redis' clock (workers' clocks may disagree). A slot at
most `max_wait` away is reserved and the caller sleeps until it; a farther one is not reserved,
and the caller is told when to come back: turned-away requests get return times one interval
apart (the `queue` key), so a backlog returns as a trickle, not a herd. Leases expire unless
renewed, so a killed worker's slot frees itself within `lease_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.logging import describe, get_logger

log = get_logger(__name__)

US = 1_000_000
RELEASE_TIMEOUT_S = 2.0

Reason = Literal["ok", "host_rate", "host_concurrency", "host_backoff"]
REASONS: dict[str, Reason] = {r: r for r in ("ok", "host_rate", "host_concurrency", "host_backoff")}

# KEYS: tat, queue, leases, not_before. ARGV: token, interval µs (0: no pace), burst,
# limit (0: no cap), lease µs, max wait µs. Returns {granted, reason, wait µs, go-time µs}.
_ADMIT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, burst = tonumber(ARGV[2]), tonumber(ARGV[3])
local limit, lease, max_wait = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local function fmt(x) return string.format('%.0f', x) end
local function ttl_ms(at) return math.ceil((at - now) / 1000) + 1000 end
local go, reason = now, 'host_backoff'
local not_before = tonumber(redis.call('GET', KEYS[4]) or '0')
if not_before > go then go = not_before end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if interval > 0 and tat - (burst - 1) * interval > go then
  go, reason = tat - (burst - 1) * interval, 'host_rate'
end
if go - now > max_wait then
  local back = go
  if interval > 0 then
    back = math.max(go, tonumber(redis.call('GET', KEYS[2]) or '0'))
    redis.call('SET', KEYS[2], fmt(back + interval), 'PX', ttl_ms(back + interval))
  end
  return {0, reason, back - now, back}
end
if limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', fmt(now))
  if redis.call('ZCARD', KEYS[3]) >= limit then
    return {0, 'host_concurrency', 0, now}
  end
  redis.call('ZADD', KEYS[3], fmt(now + lease), ARGV[1])
  redis.call('PEXPIRE', KEYS[3], ttl_ms(now + 2 * lease))
end
if interval > 0 then
  tat = math.max(tat, go) + interval
  redis.call('SET', KEYS[1], fmt(tat), 'PX', ttl_ms(tat))
end
return {1, 'ok', go - now, go}
"""

# KEYS: leases. ARGV: token, lease µs. Re-adds a lease that expired (the holder stalled).
_RENEW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local lease = tonumber(ARGV[2])
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], string.format('%.0f', now + lease), ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(2 * lease / 1000) + 1000)
if held and tonumber(held) > now then return 1 end
return 0
"""

# KEYS: not_before. ARGV: delay µs. Only ever moves the time later. Returns µs left.
_BACK_OFF_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local target = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if target > current then
  redis.call('SET', KEYS[1], string.format('%.0f', target), 'PX', math.ceil((target - now) / 1000))
  return target - now
end
return current - now
"""


def host_keys(host: str) -> tuple[str, str, str, str]:
    """The Redis keys of one host: tat, queue, leases, not_before."""
    base = f"outrider:host:{{{host}}}:"
    return base + "tat", base + "queue", base + "leases", base + "not_before"


@dataclass(frozen=True)
class HostLimits:
    """What one request must respect: `rate_per_s` and `concurrency` of 0 mean no limit."""

    rate_per_s: float
    concurrency: int
    burst: int = 1

    @property
    def interval_us(self) -> int:
        return max(round(US / self.rate_per_s), 1) if self.rate_per_s > 0 else 0


@dataclass(frozen=True)
class Admission:
    """The answer to "may I send a request to this host?".

    Granted: sleep `wait_s` (a reserved slot, at most the caller's max wait), then go; a lease
    is held if the host has a concurrency cap (`leased`). Refused: `reason` says why, and
    `wait_s` when to ask again (0 when unknown: a concurrency slot frees when a request ends).
    `at_s` is the Redis time at which the request may go (granted) or should come back.
    """

    granted: bool
    reason: Reason
    wait_s: float
    at_s: float
    leased: bool = False


class HostGate:
    """Admission to hosts, shared by every worker through one Redis."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._admit = redis.register_script(_ADMIT_LUA)
        self._renew = redis.register_script(_RENEW_LUA)
        self._back_off = redis.register_script(_BACK_OFF_LUA)

    async def admit(
        self, host: str, token: str, limits: HostLimits, *, max_wait_s: float, lease_s: float
    ) -> Admission:
        """Ask for a slot on `host` for the request `token` (unique per attempt)."""
        granted, reason, wait_us, at_us = await self._admit(
            keys=list(host_keys(host)),
            args=[
                token,
                limits.interval_us,
                limits.burst,
                limits.concurrency,
                math.ceil(lease_s * US),
                math.floor(max_wait_s * US),
            ],
        )
        text = reason.decode() if isinstance(reason, bytes) else str(reason)
        return Admission(
            granted=bool(granted),
            reason=REASONS[text],
            wait_s=max(int(wait_us), 0) / US,
            at_s=int(at_us) / US,
            leased=bool(granted) and limits.concurrency > 0,
        )

    async def renew(self, host: str, token: str, lease_s: float) -> bool:
        """Extend a lease; False if it had expired (it is taken again all the same)."""
        held = await self._renew(keys=[host_keys(host)[2]], args=[token, math.ceil(lease_s * US)])
        return bool(held)

    async def release(self, host: str, token: str) -> None:
        """Give a lease back; best effort, since an unreleased lease expires on its own."""
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT_S):
                await self.redis.zrem(host_keys(host)[2], token)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("host.release_failed", host=host, error=describe(exc))

    async def back_off(self, host: str, delay_s: float) -> float:
        """No request to `host` for `delay_s` (never shortens a longer backoff); seconds left."""
        left_us = await self._back_off(
            keys=[host_keys(host)[3]], args=[max(math.ceil(delay_s * US), 1)]
        )
        return max(int(left_us), 0) / US

    async def _keep(self, host: str, token: str, lease_s: float) -> None:
        while True:
            await asyncio.sleep(lease_s / 3)
            try:
                if not await self.renew(host, token, lease_s):
                    log.warning("host.lease_lost", host=host)
            except (RedisError, OSError) as exc:
                log.warning("host.renew_failed", host=host, error=describe(exc))

    @contextlib.asynccontextmanager
    async def holding(self, host: str, token: str, lease_s: float) -> AsyncIterator[None]:
        """Keep a granted lease alive while the block runs, and release it afterwards."""
        keeper = asyncio.create_task(self._keep(host, token, lease_s))
        try:
            yield
        finally:
            keeper.cancel()
            await asyncio.wait({keeper})
            await self.release(host, token)

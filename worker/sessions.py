"""Job sessions: a cookie jar and browser storage an agent keeps under a name across jobs.

One format for every kind, Playwright's storage state (worker/session_state.py: the state and
its cookie jar). A `render` context starts from it and hands back its own; aiohttp jobs get
its cookies in a jar of their own and give back what the jar holds at the end. So a login in a
render is seen by the next fetch, and a cookie a fetch was given by the next render.

The life of a session job, in the runner (`held_session`):
1. Lock: one Redis key per agent and name, `SET NX PX` with the attempt's token, renewed every
   third of `OUTRIDER_SESSION_LOCK_S` while the job runs, deleted by its holder only (Lua).
   A dead worker's lock frees itself after `OUTRIDER_SESSION_LOCK_S`. A job that finds the lock
   taken is deferred (`Deferred`: back on the queue after about a second, without using up an
   attempt), as a host slot that is not free is: a session's jobs run one at a time, in no
   promised order.
2. Read the state from PostgreSQL (sealed with the agent secrets' key) and note its version.
3. The engine runs with an aiohttp session of its own for the job: the owner's connection pool
   (the same connector: no new tenant wall is needed, it is the same owner) with the job's
   own cookie jar. Jobs without a session keep the pool's session, whose jar stores nothing.
4. Only if the engine succeeded, and only if the state changed, write it back naming the
   version read: if the lock lapsed and another job wrote meanwhile, or the session was
   deleted, this write is dropped (logged), never merged over the newer state.

A crawl's pages (jobs with `parent_id`) share their session instead of queueing for it, so a
crawl keeps as many pages in flight as it would without one: a page reads the state without
the lock (step 1 skipped), and writes back (step 4) only while holding the lock for that write
alone, taken without waiting: when another job holds it (a login in progress), or another page
wrote first (the version moved on), the page's change is dropped and logged. Pages never
overwrite a job that holds the session, nor each other's writes; a standalone job still waits
for the lock, so a login and a crawl of the same session do not lose each other's cookies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
from collections.abc import AsyncIterator

import aiohttp
from redis.exceptions import RedisError

from shared.job_errors import JobErrorCode
from shared.logging import describe, get_logger
from shared.models import Job
from shared.repositories.execution import Claim
from shared.repositories.sessions import read_session, write_session
from worker.http_client import egress_middleware
from worker.retry import Deferred, JobError
from worker.session_state import JobSession
from worker.state import WorkerState

log = get_logger(__name__)

SESSION_KINDS = frozenset({"http", "fetch", "render", "scrape", "map"})
BUSY_RETRY_S = 1.0
UNAVAILABLE_RETRY_S = 2.0
RELEASE_TIMEOUT_S = 2.0

# KEYS: lock. ARGV: token, ttl ms. Extends the lock if the token still holds it.
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
# KEYS: lock. ARGV: token. Deletes the lock if the token still holds it.
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def session_name(job: Job) -> str | None:
    """The job's `session`, for the kinds that make requests with one."""
    if job.kind not in SESSION_KINDS:
        return None
    name = job.input.get("session")
    return name if isinstance(name, str) and name else None


def shares_session(job: Job) -> bool:
    """A crawl's page: reads its session without the lock (see the module's docstring)."""
    return job.parent_id is not None


def lock_key(job: Job, name: str) -> str:
    """The Redis key of a session's lock (the name is validated: letters, digits, `_.-`)."""
    return f"outrider:session:{{{job.agent_id}}}:{name}:lock"


def session_client(
    base: aiohttp.ClientSession, state: WorkerState, jar: aiohttp.CookieJar
) -> aiohttp.ClientSession:
    """An aiohttp session on `base`'s connection pool (one owner's) with `jar` for cookies.
    Closing it leaves the pool open."""
    return aiohttp.ClientSession(
        connector=base.connector,
        connector_owner=False,
        trust_env=False,
        auto_decompress=False,  # worker/bodies.py undoes the coding, whole or not at all
        timeout=base.timeout,
        headers=base.headers,
        cookie_jar=jar,
        middlewares=(egress_middleware(state.policy),),
    )


# -- the lock --------------------------------------------------------------------------------


class SessionLock:
    """A session's Redis lock, held by one attempt (`token`), renewed while held."""

    def __init__(self, state: WorkerState, key: str, token: str) -> None:
        self.redis = state.redis
        self.key = key
        self.token = token
        self.ttl_ms = max(math.ceil(state.settings.session_lock_s * 1000), 100)
        self._renew = self.redis.register_script(_RENEW_LUA)
        self._release = self.redis.register_script(_RELEASE_LUA)

    async def take(self) -> bool:
        """True if the lock was free and is now this attempt's."""
        return bool(await self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            try:
                if not await self._renew(keys=[self.key], args=[self.token, self.ttl_ms]):
                    log.warning("session.lock_lost")  # the write-back's version check decides
                    return
            except (RedisError, OSError) as exc:
                log.warning("session.renew_failed", error=describe(exc))

    async def release(self) -> None:
        """Give the lock back; best effort (an unreleased lock expires)."""
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT_S):
                await self._release(keys=[self.key], args=[self.token])
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("session.release_failed", error=describe(exc))

    @contextlib.asynccontextmanager
    async def holding(self) -> AsyncIterator[None]:
        """Keep the (taken) lock alive while the block runs; release it afterwards."""
        keeper = asyncio.create_task(self._keep())
        try:
            yield
        finally:
            keeper.cancel()
            await asyncio.wait({keeper})
            await self.release()


async def _read(state: WorkerState, claim: Claim, name: str) -> JobSession:
    async with state.sessionmaker() as db:
        stored = await read_session(db, state.box, claim.job.owner_id, claim.job.agent_id, name)
    return JobSession(name, stored)


def _lock(state: WorkerState, claim: Claim, name: str) -> SessionLock:
    return SessionLock(state, lock_key(claim.job, name), f"{claim.job.id}:{claim.fence}")


@contextlib.asynccontextmanager
async def held_session(state: WorkerState, claim: Claim, name: str) -> AsyncIterator[JobSession]:
    """Lock and read the job's session for the block; raises Deferred when another job holds
    it (or Redis cannot say). A crawl's page only reads it (no lock). The caller saves it
    (`save_session`) when the job succeeded."""
    if shares_session(claim.job):
        yield await _read(state, claim, name)
        return
    lock = _lock(state, claim, name)
    try:
        taken = await lock.take()
    except (RedisError, OSError) as exc:
        log.warning("session.lock_unavailable", error=describe(exc))
        raise Deferred(UNAVAILABLE_RETRY_S, "session_unavailable") from exc
    if not taken:
        raise Deferred(BUSY_RETRY_S * random.uniform(0.5, 1.5), "session_busy")
    async with lock.holding():
        yield await _read(state, claim, name)


async def save_session(state: WorkerState, claim: Claim, session: JobSession) -> None:
    """Write back what the job changed (see the module's docstring); JobError
    `session_too_large` past OUTRIDER_SESSION_MAX_BYTES."""
    if not session.changed():
        return
    final = session.final_state()
    size = len(json.dumps(final, separators=(",", ":")).encode())
    cap = state.settings.session_max_bytes
    if size > cap:
        raise JobError(
            JobErrorCode.SESSION_TOO_LARGE,
            f"The session {session.name!r} would be {size} bytes: more than {cap}.",
            retryable=False,
            details={"bytes": size, "max_bytes": cap},
        )
    sealed = state.box.seal_json(final)
    if shares_session(claim.job):
        written = await _write_unheld(state, claim, session, sealed)
    else:
        written = await _write(state, claim, session, sealed)
    if written:
        log.info("session.saved", session=session.name, version=session.version + 1)
    elif written is not None:
        # Expected on a crawl of a site that sets a cookie on every page: info, not a warning.
        log.info("session.write_dropped", session=session.name, read_version=session.version)


async def _write(state: WorkerState, claim: Claim, session: JobSession, sealed: bytes) -> bool:
    async with state.sessionmaker.begin() as db:
        return await write_session(
            db, claim.job.owner_id, claim.job.agent_id, session.name, sealed, session.version
        )


async def _write_unheld(
    state: WorkerState, claim: Claim, session: JobSession, sealed: bytes
) -> bool | None:
    """A crawl page's write-back: under the lock for this write only, taken without waiting.
    None when the lock is busy (or Redis cannot say): the change is dropped (logged here)."""
    lock = _lock(state, claim, session.name)
    try:
        taken = await lock.take()
    except (RedisError, OSError) as exc:
        log.warning("session.write_dropped", session=session.name, error=describe(exc))
        return None
    if not taken:
        log.info("session.write_dropped", session=session.name, reason="session_busy")
        return None
    try:
        return await _write(state, claim, session, sealed)
    finally:
        await lock.release()

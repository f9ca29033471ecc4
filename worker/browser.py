"""One Chromium per browser worker: launched at start, a fresh context per job, recycled after
N pages or past its memory limit, relaunched after a crash, and never left behind (see
browser_processes.py for how). Page operations run under a Budget (browser_budget.py).
While jobs run, a watcher bounds each page's memory and the browser's (browser_memory.py).

Egress. Chromium goes out only through the worker's EgressProxy (see browser_egress.py);
WebRTC may not use UDP, QUIC is off, and background networking and updates are disabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.egress import EgressPolicy
from shared.job_errors import JobErrorCode
from shared.logging import get_logger
from shared.settings import Settings
from worker import browser_processes as procs
from worker.browser_egress import Door, EgressProxy
from worker.browser_memory import V8_HEAP, MemoryGuard, WatchedPage
from worker.proxy_tunnel import ProxyRoute
from worker.retry import JobError

log = get_logger(__name__)

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--no-first-run",
    "--disable-sync", "--disable-quic",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
)  # fmt: skip
# Chromium honours only the last --disable-features, and Playwright passes its own list first:
# that list (Playwright 1.65) is repeated here (a test checks it still covers Playwright's),
# then two things a browser that opens one page per fresh context pays for on every job and
# never uses: the omnibox popup's WebUI renderer of each new window, and the spare renderer
# started for a context's next navigation (about 60 % of Chromium's CPU per page here).
PLAYWRIGHT_DISABLED_FEATURES = (
    "AvoidUnnecessaryBeforeUnloadCheckSync", "DestroyProfileOnBrowserClose", "HttpsUpgrades",
    "HttpsFirstBalancedModeAutoEnable", "LensOverlay", "MediaRouter", "PaintHolding",
    "ThirdPartyStoragePartitioning", "AvoidCorsURLLoaderRestartOnRedirect",
    "TcpPortRandomizationWin", "OptimizationHints", "NetworkTimeServiceQuerying", "AimEnabled",
    "PreconnectToSearch", "msForceBrowserSignIn", "msEdgeUpdateLaunchServicesPreferredVersion",
)  # fmt: skip
DISABLED_FEATURES = (
    *PLAYWRIGHT_DISABLED_FEATURES,
    "WebUIOmniboxPopup",
    "WebUIOmniboxAimPopup",
    "SpareRendererForSitePerProcess",
)
DISABLE_FEATURES_FLAG = "--disable-features=" + ",".join(DISABLED_FEATURES)
MARKER_FLAG = "--outrider-browser"  # ignored by Chromium; tells its processes apart (ps, tests)
CONTEXT_OP_S = 10.0
CLOSE_S = 5.0
CRASH_GRACE_S = 1.0


@dataclass(eq=False)
class Generation:
    """One launched browser: its main pid (= its process group) and what it has served."""

    browser: Browser
    pid: int
    pages: int = 0
    active: int = 0
    retired: bool = False
    dead: asyncio.Event = field(default_factory=asyncio.Event)


class BrowserPool:
    """The worker's browser: `async with pool.context(...)` gives a job its own context."""

    def __init__(self, settings: Settings, policy: EgressPolicy) -> None:
        self.settings = settings
        self.proxy = EgressProxy(policy)
        self._playwright: Playwright | None = None
        self._current: Generation | None = None
        self._live: set[Generation] = set()
        self._lock = asyncio.Lock()
        self._contexts: dict[BrowserContext, Generation] = {}
        self.memory = MemoryGuard(settings, self._running)
        self.launches = 0

    @classmethod
    async def start(cls, settings: Settings, policy: EgressPolicy) -> BrowserPool:
        """Start the proxy and the driver and launch Chromium; a failed launch is logged and
        retried by the next job (which fails `browser_unavailable` meanwhile)."""
        pool = cls(settings, policy)
        procs.hold_subreaper()
        await pool.proxy.start()
        pool.memory.start()
        try:
            async with pool._lock:
                pool._current = await pool._launch()
        except JobError as exc:
            log.error("browser.launch_failed", error=exc.message)
        return pool

    def _running(self) -> list[Generation]:
        return [g for g in self._live if g.pid and not g.dead.is_set()]

    def browser_pids(self) -> list[int]:
        """The main pids of the live browsers (for the metrics; safe from any thread)."""
        return [g.pid for g in list(self._live) if g.pid and not g.dead.is_set()]

    async def _launch(self) -> Generation:
        path = self.settings.chromium_path
        if not await asyncio.to_thread(os.path.isfile, path):
            raise JobError(
                JobErrorCode.BROWSER_UNAVAILABLE,
                f"Chromium was not found at {path}: install it (apt-get install chromium) or "
                "set OUTRIDER_CHROMIUM_PATH.",
                retryable=True,
            )
        marker = f"{MARKER_FLAG}={os.getpid()}-{secrets.token_hex(4)}"
        args = [*self._flags(), marker]
        limit_s = self.settings.browser_launch_timeout_s
        try:
            if self._playwright is None:
                self._playwright = await async_playwright().start()
            async with asyncio.timeout(limit_s + 5):
                browser = await self._playwright.chromium.launch(
                    executable_path=path,
                    args=args,
                    headless=True,
                    chromium_sandbox=False,
                    handle_sigint=False,  # the worker decides when the browser stops
                    handle_sigterm=False,
                    handle_sighup=False,
                    timeout=limit_s * 1000,
                )
        except (PlaywrightError, TimeoutError, OSError) as exc:
            pid = await asyncio.to_thread(procs.find_by_argument, marker)
            if pid is not None:  # launched, but too late to use
                await asyncio.to_thread(procs.terminate_group, pid)
            if not self._live:  # the driver may be what failed: the next launch starts anew
                await self._stop_driver()
            raise JobError(
                JobErrorCode.BROWSER_UNAVAILABLE, f"Chromium did not start: {exc}", retryable=True
            ) from exc
        pid = await asyncio.to_thread(procs.find_by_argument, marker)
        generation = Generation(browser=browser, pid=pid or 0)
        browser.on("disconnected", lambda _: generation.dead.set())
        self._live.add(generation)
        self.launches += 1
        log.info("browser.launched", pid=pid, launches=self.launches)
        return generation

    def _flags(self) -> list[str]:
        v8_heap_mb = int(self.settings.browser_page_max_mb * V8_HEAP)
        return [
            *CHROMIUM_FLAGS,
            DISABLE_FEATURES_FLAG,
            # A page's V8 heap stops there even between two samples of the memory watcher.
            f"--js-flags=--max-old-space-size={v8_heap_mb}",
            f"--proxy-server={self.proxy.url}",
            "--proxy-bypass-list=<-loopback>",  # loopback goes through the proxy too
        ]

    async def _acquire(self) -> Generation:
        async with self._lock:
            generation = self._current
            if generation is None or generation.retired or generation.dead.is_set():
                if generation is not None and generation.active == 0:
                    await self._dispose(generation)  # e.g. it crashed while idle
                self._current = generation = await self._launch()
            generation.active += 1
            generation.pages += 1
            return generation

    @contextlib.asynccontextmanager
    async def context(
        self,
        upstream: ProxyRoute | None = None,
        tailor: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None,
        **options: Any,
    ) -> AsyncIterator[BrowserContext]:
        """A fresh browser context for one job, closed afterwards whatever happens. A failure
        caused by the browser dying becomes a retryable `browser_crashed`. With `upstream`,
        the context's traffic goes out through that proxy, and a job that fails after it
        failed raises its ProxyFailed (the runner benches it and tries the next).
        `tailor(version, options)`: the options for the browser's version (a stealth user
        agent)."""
        generation = await self._acquire()
        door: Door | None = None
        try:
            if tailor is not None:
                options = tailor(generation.browser.version, options)
            # The context's own door into the egress proxy (the browser-wide proxy refuses all).
            async with self.proxy.door(upstream) as door:
                async with asyncio.timeout(CONTEXT_OP_S):
                    context = await generation.browser.new_context(
                        **options, proxy={"server": door.url}
                    )
                self._contexts[context] = generation
                try:
                    yield context
                finally:
                    del self._contexts[context]
                    await self._close_context(generation, context)
        except Exception as exc:
            if await self._died(generation):
                raise JobError(
                    JobErrorCode.BROWSER_CRASHED,
                    "The browser crashed during the job.",
                    retryable=True,
                ) from exc
            if door is not None and door.failure is not None:
                raise door.failure from exc
            raise
        finally:
            generation.active -= 1
            await self._after_job(generation)

    def watch(
        self, context: BrowserContext, page: Page
    ) -> contextlib.AbstractContextManager[WatchedPage]:
        """Bound the memory of `page` (of a context from `context()`) while the block runs."""
        return self.memory.watch(page, self._contexts[context])

    async def _close_context(self, generation: Generation, context: BrowserContext) -> None:
        try:
            async with asyncio.timeout(CLOSE_S):
                await context.close()
        except (PlaywrightError, TimeoutError):
            generation.retired = True  # a browser that cannot close a context is not trusted

    async def _died(self, generation: Generation) -> bool:
        if generation.dead.is_set():
            return True
        if generation.pid and await asyncio.to_thread(procs.running, generation.pid):
            return False
        # The page call may fail a moment before the driver reports the disconnect.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(generation.dead.wait(), CRASH_GRACE_S)
        return generation.dead.is_set()

    async def _after_job(self, generation: Generation) -> None:
        if generation.dead.is_set() and not generation.retired:
            generation.retired = True
            log.warning("browser.crashed", pid=generation.pid, pages=generation.pages)
        # Over its memory limit, the memory watcher has retired it already.
        if not generation.retired and generation.pages >= self.settings.browser_recycle_pages:
            generation.retired = True
            log.info("browser.recycling", reason="pages", pages=generation.pages)
        if generation.retired and generation.active == 0:
            await self._dispose(generation)

    async def _dispose(self, generation: Generation) -> None:
        if generation not in self._live:
            return  # another job got here first
        self._live.discard(generation)
        if self._current is generation:
            self._current = None
        with contextlib.suppress(PlaywrightError, TimeoutError):
            async with asyncio.timeout(CLOSE_S):
                await generation.browser.close()
        if generation.pid:
            left = await asyncio.to_thread(procs.terminate_group, generation.pid)
            if left:
                log.error("browser.processes_left", pids=left)

    async def _stop_driver(self) -> None:
        if self._playwright is not None:
            with contextlib.suppress(PlaywrightError, TimeoutError, OSError):
                async with asyncio.timeout(CLOSE_S):
                    await self._playwright.stop()
            self._playwright = None

    async def close(self) -> None:
        """Close every browser, the driver and the proxy; reap whatever Chromium left."""
        started = asyncio.get_running_loop().time()
        await self.memory.stop()
        async with self._lock:
            for generation in list(self._live):
                await self._dispose(generation)
            await self._stop_driver()
        await self.proxy.close()
        await asyncio.to_thread(procs.reap_for, 2.0)
        procs.release_subreaper()
        elapsed_s = asyncio.get_running_loop().time() - started
        log.info("browser.closed", launches=self.launches, elapsed_s=round(elapsed_s, 2))


@dataclass(frozen=True)
class RenderRuntime:
    """What `render` jobs use beyond the EngineContext: the browser and the database."""

    pool: BrowserPool
    sessionmaker: async_sessionmaker[AsyncSession]

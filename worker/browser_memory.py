"""The browser's memory, bounded while jobs run, and the job whose page went over told why.

A watcher samples every live browser's processes every WATCH_S, every WATCH_CLOSE_S while a page
or the browser is close to its limit (browser_processes.Tree: a renderer's own pages; the
browser's own pages plus the Chromium binary once). A renderer over
OUTRIDER_BROWSER_PAGE_MAX_MB is SIGKILLed; while the browser is over OUTRIDER_BROWSER_MAX_RSS_MB,
so are its largest renderers, if that can bring it under (else the browser is retired: replaced
once its jobs end). V8's heap is capped at V8_HEAP times the page limit (`--js-flags`): a
backstop for a script that allocates faster than the watcher samples. Other pages go on: a
renderer serves one browser context, that is one job.

Which job a renderer serves: a DevTools search id is made in the renderer and starts with its
pid (`DOM.performSearch` answers "<pid>.<n>"), so the job pages (and their out-of-process
frames) are asked, in the background, when it matters: a renderer no page claims has grown past
half the page limit, or the browser is close to its own. The watcher never waits for answers
(it kills by pid); a page whose renderer was killed before it was claimed is blamed if it
crashes then, and a page that crashes after its renderer was seen past half the limit ran out of
V8's heap: `page_too_large` either way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

from shared.job_errors import JobErrorCode
from shared.logging import describe, get_logger
from shared.settings import Settings
from worker import browser_processes as procs
from worker.retry import JobError

log = get_logger(__name__)

WATCH_S = 0.5
WATCH_CLOSE_S = 0.1  # while a renderer or the browser is close to its limit
CLOSE = 0.75  # of the browser's limit
CLOSE_PAGE = 0.25  # of the page limit
V8_HEAP = 1.5  # V8's heap cap, of the page limit: a backstop, the watcher stops pages first
ASK_TIMEOUT_S = 1.0
MAX_FRAMES_ASKED = 20
LARGE = 0.5  # of the page limit: a renderer this big should have a known job
PROBE = "outrider-renderer-probe"  # a search that finds nothing: its id is all we want
MB = 1024 * 1024


class Browser(Protocol):
    """What the watcher needs of a launched browser (worker/browser.py's Generation)."""

    pid: int
    retired: bool


@dataclass(eq=False)
class WatchedPage:
    """One job's page as the watcher sees it: its renderers, the largest RSS seen, whether the
    watcher killed it (and why), whether it crashed."""

    page: Page
    browser: Browser
    page_max: int
    pids: set[int] = field(default_factory=set)
    peak: int = 0
    killed: JobError | None = None
    suspect: JobError | None = None  # a renderer of unknown page was killed meanwhile
    crashed: asyncio.Event = field(default_factory=asyncio.Event)

    def verdict(self) -> JobError | None:
        """`page_too_large` if memory is why the page is gone, else None."""
        if self.killed is not None:
            return self.killed
        if self.crashed.is_set() and self.suspect is not None:
            return self.suspect
        if self.crashed.is_set() and self.peak >= self.page_max * LARGE:
            return JobError(
                JobErrorCode.PAGE_TOO_LARGE,
                f"The page ran out of memory: it reached {self.peak // MB} MB (the limit per "
                f"page is {self.page_max // MB} MB).",
                retryable=False,
                details={"rss_mb": self.peak // MB, "limit_mb": self.page_max // MB},
            )
        return None

    async def sleep(self, seconds: float) -> None:
        """Sleep, unless the page crashes first (then fail as the crash deserves)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.crashed.wait(), seconds)
            raise self.verdict() or JobError(
                JobErrorCode.BROWSER_ERROR, "The page crashed.", retryable=True
            )


async def _renderer_pid(page: Page, target: Any) -> int | None:
    try:
        session = await page.context.new_cdp_session(target)
    except PlaywrightError:
        return None  # a frame in its parent's process has no target of its own
    try:
        await session.send("DOM.enable")
        found = await session.send("DOM.performSearch", {"query": PROBE})
        await session.send("DOM.discardSearchResults", {"searchId": found["searchId"]})
        await session.send("DOM.disable")
    finally:
        with contextlib.suppress(PlaywrightError):
            await session.detach()
    pid = str(found["searchId"]).partition(".")[0]
    return int(pid) if pid.isdigit() else None


async def renderer_pids(page: Page) -> set[int] | None:
    """The pids of the renderers showing `page`: its own and its out-of-process frames'; None
    if the page did not answer in time (busy in a script)."""
    main = page.main_frame
    targets = [page, *(f for f in page.frames[:MAX_FRAMES_ASKED] if f is not main)]
    try:
        async with asyncio.timeout(ASK_TIMEOUT_S):
            found = await asyncio.gather(
                *(_renderer_pid(page, t) for t in targets), return_exceptions=True
            )
    except TimeoutError:
        return None
    return {pid for pid in found if isinstance(pid, int)}


class MemoryGuard:
    """The watcher of one browser pool: `watch()` each job's page, `start()`, `stop()`."""

    def __init__(self, settings: Settings, browsers: Callable[[], Iterable[Browser]]) -> None:
        self.page_max = settings.browser_page_max_mb * MB
        self.max_total = settings.browser_max_rss_mb * MB
        self.browsers = browsers
        self.pages: set[WatchedPage] = set()
        self.kills = 0
        self._trees: dict[int, procs.Tree] = {}
        self._asked: set[int] = set()
        self._asking: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="browser-memory-guard")

    async def stop(self) -> None:
        tasks = [task for task in (self._task, self._asking) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @contextlib.contextmanager
    def watch(self, page: Page, browser: Browser) -> Iterator[WatchedPage]:
        """Watch `page` while the block runs."""
        watched = WatchedPage(page, browser, self.page_max)
        page.on("crash", lambda _: watched.crashed.set())
        self.pages.add(watched)
        try:
            yield watched
        finally:
            self.pages.discard(watched)

    async def _run(self) -> None:
        pause = WATCH_S
        while True:
            await asyncio.sleep(pause)
            browsers = list(self.browsers())
            for gone in self._trees.keys() - {b.pid for b in browsers}:
                del self._trees[gone]
            pause = WATCH_S
            for browser in browsers:
                try:
                    if await self._check(browser):
                        pause = WATCH_CLOSE_S
                except Exception as exc:  # the watcher must outlive any one bad sample
                    log.error("browser.memory_check_failed", error=describe(exc))

    async def _check(self, browser: Browser) -> bool:
        """Sample `browser` and kill what is over a limit; whether it is close to one."""
        tree = self._trees.setdefault(browser.pid, procs.Tree(browser.pid))
        usage = await asyncio.to_thread(tree.usage)
        pages = [w for w in self.pages if w.browser is browser]
        owners = self._owners(pages, usage)
        for watched in pages:
            rss = max((usage.renderers.get(pid, 0) for pid in watched.pids), default=0)
            watched.peak = max(watched.peak, rss)
        victims = self._victims(usage)
        if victims:
            await self._kill(victims, usage, owners, pages)
        freed = sum(usage.renderers[pid] for pid in victims)
        if usage.total - freed > self.max_total and not browser.retired:
            browser.retired = True  # replaced once its jobs end (browser.py)
            log.warning("browser.recycling", reason="memory", total_mb=usage.total // MB)
        largest = max(usage.renderers.values(), default=0)
        return usage.total >= self.max_total * CLOSE or largest >= self.page_max * CLOSE_PAGE

    def _owners(self, pages: list[WatchedPage], usage: procs.Usage) -> dict[int, WatchedPage]:
        """Renderer pid -> the job page it serves, as far as known. The pages are asked, in the
        background (a page busy in a script may take a while to answer, and the watcher must
        not wait), when a renderer no page claims is large, or any is while the browser is
        close to its limit: once per such renderer, so most pages are never asked."""
        owners = {pid: w for w in pages for pid in w.pids}
        close = usage.total >= self.max_total * CLOSE
        unknown = {
            pid
            for pid, rss in usage.renderers.items()
            if pid not in owners
            and pid not in self._asked
            and (close or rss >= self.page_max * LARGE)
        }
        if unknown and pages and (self._asking is None or self._asking.done()):
            self._asking = asyncio.create_task(self._ask(pages, unknown))
        self._asked &= usage.renderers.keys()
        return owners

    async def _ask(self, pages: list[WatchedPage], unknown: set[int]) -> None:
        found = await asyncio.gather(*(renderer_pids(w.page) for w in pages))
        for watched, pids in zip(pages, found, strict=True):
            watched.pids |= pids or set()
        if None not in found:  # else asked again on the next tick
            self._asked |= unknown

    def _victims(self, usage: procs.Usage) -> dict[int, JobError]:
        """Renderers to kill: each one over the page limit; then, while the browser is over its
        limit, the largest ones, if killing renderers can bring it under at all (a browser
        process that grew by itself is retired instead)."""
        victims = {
            pid: self._too_large(rss) for pid, rss in usage.renderers.items() if rss > self.page_max
        }
        total = usage.total - sum(usage.renderers[pid] for pid in victims)
        rest = sorted(
            (pid for pid in usage.renderers if pid not in victims),
            key=usage.renderers.__getitem__,
            reverse=True,
        )
        if total - sum(usage.renderers[pid] for pid in rest) > self.max_total:
            return victims
        for pid in rest:
            if total <= self.max_total:
                break
            victims[pid] = self._over_budget(usage.renderers[pid], usage.total)
            total -= usage.renderers[pid]
        return victims

    def _too_large(self, rss: int) -> JobError:
        return JobError(
            JobErrorCode.PAGE_TOO_LARGE,
            f"The page used {rss // MB} MB, over the limit of {self.page_max // MB} MB per "
            "page, and was stopped.",
            retryable=False,
            details={"rss_mb": rss // MB, "limit_mb": self.page_max // MB},
        )

    def _over_budget(self, rss: int, total: int) -> JobError:
        return JobError(
            JobErrorCode.PAGE_TOO_LARGE,
            f"The browser used {total // MB} MB, over its limit of {self.max_total // MB} MB, "
            f"and this page was the largest ({rss // MB} MB): stopped.",
            retryable=False,
            details={"rss_mb": rss // MB, "browser_mb": total // MB},
        )

    async def _kill(
        self,
        victims: dict[int, JobError],
        usage: procs.Usage,
        owners: dict[int, WatchedPage],
        pages: list[WatchedPage],
    ) -> None:
        # Told before the kill: a job reads it as soon as its page dies. A renderer no page
        # claims may be the new one of a page whose known renderers are gone, or that was not
        # asked yet: those pages are suspects, blamed if their page crashes now.
        unclaimed = [error for pid, error in victims.items() if pid not in owners]
        for pid, error in victims.items():
            if (watched := owners.get(pid)) is not None:
                watched.peak = max(watched.peak, usage.renderers[pid])
                watched.killed = error
        for page in pages:
            if unclaimed and page.killed is None and not page.pids & usage.renderers.keys():
                page.suspect = unclaimed[0]
        killed = await asyncio.to_thread(lambda: [procs.kill_renderer(pid) for pid in victims])
        for (pid, error), done in zip(victims.items(), killed, strict=True):
            if done:
                self.kills += 1
                mb = usage.renderers[pid] // MB
                log.warning("browser.page_killed", pid=pid, rss_mb=mb, reason=error.message)

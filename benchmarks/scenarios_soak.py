"""The soak: thousands of mixed jobs through one worker per queue (as `make run` starts them),
watching each worker process's RSS; then SIGTERM, and no Chromium process may be left.

The mix, per 100 jobs: 70 `http` (`/ok`), 27 `fetch` (markdown + links of a site page),
2 `render` and 1 `scrape` (`auto`, of a JS page: it escalates to the browser). A warm-up of
the same mix (5 % of the jobs, at least 100) runs first; the RSS after it is the reference,
the RSS when the last job is done is the end. RSS is the worker's own process (its parse pool
children are recycled every 500 parses; Chromium's processes are counted apart). Every
Chromium process the browser worker runs is noted while the soak runs (its descendants named
chrom*, and the tree of the process carrying the `--outrider-browser=PID-` marker Outrider puts
on the browser's command line); a second after the workers have exited on SIGTERM none of them
may still run (there must have been some, or the check proves nothing).
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import Sizes, Stats
from benchmarks.memory import ChromiumWatch, PeakSampler, chromium_of, rss_mb, still_running
from benchmarks.stack import outrider_stack

Result = dict[str, Any]
GROWTH_LIMIT_MB = 50


def mixed_specs(target: str, jobs: int, offset: int = 0) -> list[dict[str, Any]]:
    """`jobs` specs of the soak's mix, kinds interleaved."""
    specs: list[dict[str, Any]] = []
    for i in range(offset, offset + jobs):
        slot = i % 100
        if slot < 70:
            specs.append({"kind": "http", "input": {"url": f"{target}/ok"}})
        elif slot < 97:
            url = f"{target}/site/{i % 500}"
            specs.append({"kind": "fetch", "input": {"url": url, "formats": ["markdown", "links"]}})
        else:
            kind = "scrape" if slot == 99 else "render"
            specs.append({"kind": kind, "input": {"url": f"{target}/js/{i % 100}"}})
    return specs


def soak(rounds: int, sizes: Sizes) -> Result:
    """One run (rounds do not apply): RSS growth of each worker, Chromium left after SIGTERM."""
    jobs = sizes.soak_jobs
    with outrider_stack() as stack:
        default = stack.start_workers("default", 1)[0]
        browser = stack.start_workers("browser", 1)[0]
        workers = {"default": default, "browser": browser}
        stack.run(mixed_specs(stack.target, max(jobs // 20, 100)))
        time.sleep(1)
        before = {name: rss_mb(proc.pid) for name, proc in workers.items()}
        stack.reset()
        with (
            PeakSampler(default.pid, 1.0, rss_mb) as d,
            PeakSampler(browser.pid, 1.0, rss_mb) as b,
            ChromiumWatch(browser.pid) as chromium,
        ):
            rate = stack.run(mixed_specs(stack.target, jobs, offset=1000))
        peaks = {"default": d.peak_mb, "browser": b.peak_mb}
        time.sleep(1)
        after = {name: rss_mb(proc.pid) for name, proc in workers.items()}
        seen = chromium.seen  # must not be empty, or the check below proves nothing
        stack.stop([default, browser])
        time.sleep(1)
        left = still_running(seen) + [p for p in chromium_of(browser.pid) if p not in seen]
    growth = {name: after[name] - before[name] for name in workers}
    stats = [Stats("soak jobs/s", "jobs/s", [rate])]
    for name in workers:
        stats.append(Stats(f"{name} RSS warm", "MB", [before[name]]))
        stats.append(Stats(f"{name} RSS peak", "MB", [peaks[name]]))
        stats.append(Stats(f"{name} RSS end", "MB", [after[name]]))
        stats.append(Stats(f"{name} RSS growth", "MB", [growth[name]]))
    stats.append(Stats("Chromium seen", "procs", [float(len(seen))]))
    stats.append(Stats("Chromium left", "procs", [float(len(left))]))
    return {
        "stats": stats,
        "ratio": None,
        "target": f"RSS growth <= {GROWTH_LIMIT_MB} MB per worker; 0 Chromium after SIGTERM",
        "pass": max(growth.values()) <= GROWTH_LIMIT_MB and bool(seen) and not left,
        "notes": f"{jobs} mixed jobs, one run; Chromium pids left: {left}",
    }

"""The `render` scenario: JS pages through one browser worker, against Playwright loops.

A round runs three sides in turn, each alone: Outrider (one `outrider worker --queue browser`,
whose default page limit is 4), the one-browser loop and the launch-per-page loop of
benchmarks/bare_render.py (4 pages at once). While each runs, the PSS of its whole process tree
(worker or script, Playwright's driver, every Chromium process, Outrider's parse pool) is
sampled every second (see SAMPLE_S).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from benchmarks.common import ROOT, Sizes, Stats
from benchmarks.memory import PeakSampler
from benchmarks.stack import Stack, outrider_stack

Result = dict[str, Any]
CONCURRENCY = 4
PSS_LIMIT_MB = 1536
# A PSS sample walks the page tables of every process in the tree (~35 ms of CPU here) and
# holds each one's memory map meanwhile; every 0.25 s it slowed the side with the bigger tree
# (Outrider's: the worker's heap, its parse pool) by ~10 %. Once a second perturbs far less.
SAMPLE_S = 1.0
MARKDOWN_SQL = "SELECT avg(length(result->>'markdown'))::float8 AS chars FROM job"


def _specs(target: str, pages: range) -> list[dict[str, Any]]:
    return [
        {"kind": "render", "input": {"url": f"{target}/js/{n}", "formats": ["markdown"]}}
        for n in pages
    ]


def _outrider_round(stack: Stack, pages: int) -> tuple[float, float, float]:
    """(pages/s, peak PSS MB, markdown chars per page)."""
    [worker] = stack.start_workers("browser", 1, concurrency=CONCURRENCY)
    try:
        stack.run(_specs(stack.target, range(CONCURRENCY)))
        stack.reset()
        with PeakSampler(worker.pid, SAMPLE_S) as sampler:
            rate = stack.run(_specs(stack.target, range(pages)))
        chars = float(stack.query(MARKDOWN_SQL)["chars"])
        stack.reset()
        return rate, sampler.peak_mb, chars
    finally:
        stack.stop([worker])


def bare_round(target: str, pages: int, mode: str, chromium: str) -> tuple[dict[str, Any], float]:
    """Run benchmarks/bare_render.py in its own process: (its JSON report, peak PSS MB)."""
    args = ["--base", target, "--pages", str(pages), "--mode", mode, "--chromium", chromium]
    warmup = CONCURRENCY if mode == "browser" else 2
    args += ["--concurrency", str(CONCURRENCY), "--warmup", str(warmup)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bare_render", *args],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=os.environ,
    )
    with PeakSampler(proc.pid, SAMPLE_S) as sampler:
        out, _ = proc.communicate(timeout=900)
    if proc.returncode:
        raise RuntimeError(f"bare_render --mode {mode} exited {proc.returncode}")
    report: dict[str, Any] = json.loads(out)
    return report, sampler.peak_mb


def render(rounds: int, sizes: Sizes) -> Result:
    """`render` of JS pages, 4 at once: Outrider's pipeline against one browser with a fresh
    context per page, and against a browser launched per page."""
    pages = sizes.render_pages
    sides = ("outrider", "1-browser", "launch")
    ours, one, launch = (Stats(f"{side} pages/s", "pages/s") for side in sides)
    ours_pss, one_pss = Stats("outrider peak PSS", "MB"), Stats("1-browser peak PSS", "MB")
    chars: dict[str, float] = {}
    with outrider_stack() as stack:
        chromium = stack.env.get("OUTRIDER_CHROMIUM_PATH", "/usr/bin/chromium")
        for _ in range(rounds):
            rate, peak, chars["outrider"] = _outrider_round(stack, pages)
            ours.values.append(rate)
            ours_pss.values.append(peak)
            report, peak = bare_round(stack.target, pages, "browser", chromium)
            one.values.append(report["pages_per_s"])
            one_pss.values.append(peak)
            chars["bare"] = report["markdown_chars"]
            report, _ = bare_round(stack.target, pages, "launch", chromium)
            launch.values.append(report["pages_per_s"])
    ratio = ours.median / one.median
    peak_max = max(ours_pss.values)
    return {
        "stats": [ours, one, launch, ours_pss, one_pss],
        "ratio": ratio,
        "target": f">= 0.8x the one-browser loop; peak PSS <= {PSS_LIMIT_MB} MB",
        "pass": ratio >= 0.8 and peak_max <= PSS_LIMIT_MB,
        "notes": (
            f"{pages} pages a round, {CONCURRENCY} at once; launch-per-page ratio "
            f"{ours.median / launch.median:.2f}; markdown chars per page "
            f"outrider {chars['outrider']:.0f}, bare {chars['bare']:.0f}"
        ),
    }

"""Soak a browser worker: N render jobs of a JS page, sampling the worker's and Chromium's RSS;
then SIGTERM and count the Chromium processes left.

    .venv/bin/python -m benchmarks.render_soak --jobs 1000
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time

import httpx
import psutil

from benchmarks.common import (
    Processes,
    create_key,
    free_port,
    fresh_database,
    outrider_env,
    private_redis,
    wait_http,
    wait_port,
)

PAGE_SERVER = """
import sys
from aiohttp import web
PAGE = ("<html><head><title>soak</title></head><body><div id='root'></div><script>"
        "document.getElementById('root').innerHTML ="
        " '<p>' + 'rendered words '.repeat(200) + '</p>';"
        "</script></body></html>")
async def page(request):
    return web.Response(text=PAGE, content_type="text/html")
app = web.Application()
app.router.add_get("/p/{n}", page)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def tree_rss_mb(pid: int) -> tuple[float, float, int]:
    """(worker RSS, Chromium tree RSS, Chromium process count) in MB."""
    worker = psutil.Process(pid)
    chromium = [p for p in worker.children(recursive=True) if "chrom" in p.name().lower()]
    chrome_rss = 0.0
    for proc in chromium:
        with contextlib.suppress(psutil.NoSuchProcess):
            chrome_rss += proc.memory_info().rss
    return worker.memory_info().rss / 2**20, chrome_rss / 2**20, len(chromium)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args()
    with fresh_database() as db, private_redis() as redis_url, Processes() as procs:
        env = outrider_env(db, redis_url)
        key = create_key(env)
        page_port, api_port = free_port(), free_port()
        procs.start([sys.executable, "-c", PAGE_SERVER, str(page_port)], {})
        wait_port(page_port)
        procs.outrider(env, "api", "--port", str(api_port))
        worker = procs.outrider(env, "worker", "--queue", "browser")
        wait_http(f"http://127.0.0.1:{api_port}/readyz")
        auth = {"Authorization": f"Bearer {key}"}
        base = f"http://127.0.0.1:{api_port}"
        with httpx.Client(base_url=base, timeout=60, headers=auth) as client:
            for start in range(0, args.jobs, 500):
                specs = [
                    {
                        "kind": "render",
                        "input": {
                            "url": f"http://127.0.0.1:{page_port}/p/{n}",
                            "formats": ["markdown"],
                        },
                    }
                    for n in range(start, min(start + 500, args.jobs))
                ]
                client.post("/v1/jobs/batch", json={"jobs": specs}).raise_for_status()
            started, samples = time.monotonic(), []
            while True:
                counts = {
                    s: len(
                        client.get("/v1/jobs", params={"status": s, "limit": 500}).json()["items"]
                    )
                    for s in ("queued", "running")
                }
                samples.append(tree_rss_mb(worker.pid))
                if counts["queued"] == 0 and counts["running"] == 0:
                    break
                time.sleep(2)
            elapsed = time.monotonic() - started
            failed = client.get("/v1/jobs", params={"status": "failed", "limit": 500}).json()
        tree_before = {p.pid for p in psutil.Process(worker.pid).children(recursive=True)}
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)
        time.sleep(1)
        left = [
            pid
            for pid in tree_before
            if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        ]
    worker_rss = [s[0] for s in samples]
    chrome_rss = [s[1] for s in samples]
    print(
        f"{args.jobs} render jobs in {elapsed:.0f} s ({args.jobs / elapsed:.1f} jobs/s), "
        f"{len(failed['items'])} failed"
    )
    print(
        f"worker RSS MB: first {worker_rss[0]:.0f}, max {max(worker_rss):.0f}, "
        f"last {worker_rss[-1]:.0f}"
    )
    print(
        f"Chromium tree RSS MB: max {max(chrome_rss):.0f}; processes max "
        f"{max(s[2] for s in samples)}"
    )
    print(f"SIGTERM exit code {code}; processes of the worker's tree still running: {left}")


if __name__ == "__main__":
    main()

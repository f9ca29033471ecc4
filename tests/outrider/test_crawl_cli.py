"""`outrider crawl`: submit through the API, follow to the end, print the summary."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import RunWorker
from tests.crawl_site import serve_site
from tests.e2e.processes import outrider_command, run_command


async def test_crawl_command_waits_and_summarizes(
    live_api: str, auth: dict[str, str], run_worker: RunWorker, tmp_path: Path
) -> None:
    key = auth["Authorization"].removeprefix("Bearer ")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTRIDER_")}
    env["OUTRIDER_DATA_DIR"] = str(tmp_path)
    async with serve_site(pages=6) as site, run_worker():
        args = ["crawl", site.url("/"), "--depth", "1", "--exclude", "/old/*", "--wait"]
        code, out, err = await run_command(
            [*outrider_command(), *args, "--url", live_api, "--key", key], env, tmp_path
        )
    assert code == 0, err
    assert "queued" in out
    assert "succeeded" in out
    assert "skipped: filtered" in out  # --exclude /old/*: the redirects were filtered
    assert site.hits["/docs/0"] == 1


async def test_crawl_command_reports_refusals(live_api: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTRIDER_")}
    env["OUTRIDER_DATA_DIR"] = str(tmp_path)
    args = ["crawl", "http://127.0.0.1:9/", "--depth", "30", "--url", live_api, "--key", "x"]
    code, _, err = await run_command([*outrider_command(), *args], env, tmp_path)
    assert code == 1
    assert "401" in err

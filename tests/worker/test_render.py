"""`render` jobs end to end: API -> browser worker (real Chromium) -> result, artifact, errors."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.api.support import assert_error
from tests.conftest import NewOwner, RunWorker
from tests.helpers import wait_for_job
from tests.worker.support import attempts_of, submit
from tests.worker.test_browser_site import Site, browser_worker, render_job, serve_site


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    async with serve_site() as served:
        yield served


async def run(
    client: httpx.AsyncClient, auth: dict[str, str], spec: dict[str, Any], timeout_s: float = 30
) -> dict[str, Any]:
    return await wait_for_job(client, auth, await submit(client, auth, spec), timeout_s=timeout_s)


FORMATS = ["markdown", "raw_html", "metadata"]


def dom(job: dict[str, Any]) -> str:
    assert job["status"] == "succeeded", job
    html: str = job["result"]["raw_html"]
    return html


async def test_a_script_only_page_renders_what_a_plain_fetch_cannot_see(
    client: httpx.AsyncClient, auth: dict[str, str], site: Site, run_worker: RunWorker
) -> None:
    async with httpx.AsyncClient() as plain:
        served = (await plain.get(site.url("/js"))).text
    assert "made by script" not in served  # only JavaScript writes it

    spec = render_job(site.url("/js"), formats=FORMATS, extract={"out": "#out"})
    async with browser_worker(run_worker):
        job = await run(client, auth, spec)

    result = job["result"]
    assert '<div id="out">made by script</div>' in dom(job)
    assert "made by script" in result["markdown"]  # the fetch formats, from the rendered DOM
    assert result["extract"] == {"out": "made by script"}
    assert result["metadata"]["final_url"] == site.url("/js")
    assert result["metadata"]["status_code"] == 200
    assert result["metadata"]["title"] == "page"
    assert job["attempts"] == 1
    assert "screenshot" not in result


async def test_wait_for_a_selector_that_appears_after_500_ms(
    client: httpx.AsyncClient, auth: dict[str, str], site: Site, run_worker: RunWorker
) -> None:
    async with browser_worker(run_worker):
        waited, hasty = await asyncio.gather(
            run(client, auth, render_job(site.url("/late"), wait_for={"selector": "#late"})),
            run(client, auth, render_job(site.url("/late?ms=3000"))),  # no waiting: not yet
        )
        idle = await run(client, auth, render_job(site.url("/late"), wait_for={"ms": 900}))

    late = '<p id="late">arrived late</p>'
    assert late in dom(waited)
    assert late in dom(idle)
    assert late not in dom(hasty)  # read at `load`, long before its timer fires


async def test_fill_and_click_change_the_dom(
    client: httpx.AsyncClient, auth: dict[str, str], site: Site, run_worker: RunWorker
) -> None:
    actions = [
        {"type": "fill", "selector": "#name", "value": "outrider"},
        {"type": "click", "selector": "#go"},
        {"type": "scroll", "y": 200},
        {"type": "wait", "ms": 50},
    ]

    def clicking(selector: str) -> dict[str, Any]:
        spec = render_job(site.url("/form"), actions=[{"type": "click", "selector": selector}])
        # 6 s: the click's own timeout (80% of it) must fire, and the context close, before
        # the job's; with 3 s the 0.6 s left for that was too tight on a loaded machine.
        return {**spec, "timeout_s": 6, "max_attempts": 2}

    async with browser_worker(run_worker):
        job, missing, broken = await asyncio.gather(
            run(client, auth, render_job(site.url("/form"), actions=actions)),
            run(client, auth, {**clicking("#nope"), "max_attempts": 1}),
            run(client, auth, clicking("p[[")),
        )

    assert '<p id="result">hello outrider</p>' in dom(job)
    assert (missing["status"], missing["error"]["code"]) == ("failed", "timeout")
    assert "Action 1 (click)" in missing["error"]["message"]
    assert (broken["status"], broken["error"]["code"]) == ("failed", "action_failed")
    assert broken["attempts"] == 1  # a broken selector is not worth another try


async def test_screenshot_is_an_artifact_only_its_owner_can_fetch(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    new_owner: NewOwner,
    site: Site,
    run_worker: RunWorker,
) -> None:
    spec = render_job(site.url("/tall"), screenshot={"full_page": True})
    async with browser_worker(run_worker):
        job = await run(client, auth, spec)

    assert job["status"] == "succeeded", job
    shot = job["result"]["screenshot"]
    assert shot["content_type"] == "image/png"
    assert shot["full_page"] is True
    response = await client.get(f"/v1/artifacts/{shot['artifact_id']}", headers=auth)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(response.content) == shot["size"]
    height = int.from_bytes(response.content[20:24], "big")  # the IHDR height
    assert height >= 3000  # the whole page, not the 800 px viewport

    stranger = await client.get(f"/v1/artifacts/{shot['artifact_id']}", headers=await new_owner())
    missing = await client.get(f"/v1/artifacts/{uuid.uuid4()}", headers=auth)
    assert_error(stranger, 404, "not_found")
    assert stranger.json() == missing.json()


async def test_block_resources_keeps_images_from_loading(
    client: httpx.AsyncClient, auth: dict[str, str], site: Site, run_worker: RunWorker
) -> None:
    async with browser_worker(run_worker):
        blocked = await run(
            client, auth, render_job(site.url("/images"), block_resources=["image"])
        )
        assert site.hits["/pixel.png"] == 0
        loaded = await run(client, auth, render_job(site.url("/images")))

    assert "<title>img-failed</title>" in dom(blocked)
    assert "<title>img-loaded</title>" in dom(loaded)
    assert site.hits["/pixel.png"] == 1


async def test_the_jobs_headers_go_to_the_pages_host_only(
    client: httpx.AsyncClient, auth: dict[str, str], site: Site, run_worker: RunWorker
) -> None:
    spec = render_job(site.url("/third-party"), headers={"X-Secret": "for the page only"})
    async with browser_worker(run_worker):
        job = await run(client, auth, spec)

    assert job["status"] == "succeeded", job
    (page,) = site.headers["/third-party"]
    (image,) = site.headers["/pixel.png"]  # same server, but another host name: localhost
    assert page["x-secret"] == "for the page only"
    assert "x-secret" not in image
    assert image["host"].startswith("localhost:")


async def test_error_codes_of_the_main_document(
    client: httpx.AsyncClient, auth: dict[str, str], site: Site, run_worker: RunWorker
) -> None:
    def spec(url: str, **extra: Any) -> dict[str, Any]:
        return {**render_job(url), "max_attempts": 2, **extra}

    # robots.txt is skipped here: for a host that does not resolve, its fetch fails first.
    agent = {"name": f"no-robots-{uuid.uuid4().hex[:6]}", "obey_robots": False}
    created = await client.post("/v1/agents", json=agent, headers=auth)
    assert created.status_code == 201, created.text
    gone = {**spec("http://does-not-exist.invalid/"), "agent_id": created.json()["id"]}

    async with browser_worker(run_worker):
        not_found, flaky, slow, bad_schema, no_dns = await asyncio.gather(
            run(client, auth, spec(site.url("/status/404"))),
            run(client, auth, spec(site.url("/flaky/a?fail=1"))),
            run(client, auth, spec(site.url("/slow?s=10"), timeout_s=2, max_attempts=1)),
            run(client, auth, {**spec(site.url("/js")), "input": {
                "url": site.url("/js"), "extract": {"x": "p[["}}}),
            run(client, auth, gone),
        )  # fmt: skip
        attempts = await attempts_of(client, auth, flaky["id"])

    assert (not_found["status"], not_found["error"]["code"]) == ("failed", "http_4xx")
    assert not_found["attempts"] == 1  # a 404 is an answer, not retried
    assert flaky["status"] == "succeeded", flaky
    assert [a["error_code"] for a in attempts] == ["http_503", None]
    assert (slow["status"], slow["error"]["code"]) == ("failed", "timeout")
    assert slow["error"]["retryable"] is True
    assert (bad_schema["status"], bad_schema["error"]["code"]) == ("failed", "invalid_extract")
    assert site.hits["/js"] == 0  # refused before the browser loaded anything
    assert (no_dns["status"], no_dns["error"]["code"]) == ("failed", "dns_not_found")
    assert no_dns["attempts"] == 1


def settled_ms(job: dict[str, Any]) -> float:
    value: float = job["result"]["metadata"]["timings_ms"]["settle"]
    return value


async def test_single_page_apps_are_read_once_they_have_rendered(
    client: httpx.AsyncClient, auth: dict[str, str], site: Site, run_worker: RunWorker
) -> None:
    def spec(path: str, **extra: Any) -> dict[str, Any]:
        return render_job(site.url(path), formats=["markdown", "metadata"], **extra)

    async with browser_worker(run_worker):
        apps = await asyncio.gather(
            run(client, auth, spec("/spa?ms=300")),
            run(client, auth, spec("/spa?ms=1500")),
            run(client, auth, spec("/spa?fetch=800")),  # load, fetch data, render
            run(client, auth, spec("/spa?ms=1500", wait_for={"selector": "#ready"})),
        )
        hasty = await run(client, auth, {**spec("/spa?ms=1500", settle_ms=0), "max_attempts": 1})

    for app in apps:
        assert app["status"] == "succeeded", app
        markdown = app["result"]["markdown"]
        assert markdown.count("The ferry leaves at nine and returns at six.") == 20, markdown
        assert "enable JavaScript" not in markdown
        assert settled_ms(app) > 0
    assert settled_ms(apps[1]) >= 1000  # its content cannot exist before its 1.5 s timer
    assert site.hits["/api/slow"] == 1
    # Read at `load` (settling off), the app is still an empty shell: a failure, not a result.
    assert (hasty["status"], hasty["error"]["code"]) == ("failed", "empty_page")
    assert hasty["error"]["retryable"] is True


async def test_a_page_that_never_settles_or_never_renders_ends_within_settle_ms(
    client: httpx.AsyncClient, auth: dict[str, str], site: Site, run_worker: RunWorker
) -> None:
    busy_spec = render_job(site.url("/busy"), formats=["raw_html", "metadata"], settle_ms=1000)
    never_spec = render_job(site.url("/spa?never=1"), formats=["markdown"], settle_ms=1000)
    async with browser_worker(run_worker):
        busy, never = await asyncio.gather(
            run(client, auth, busy_spec), run(client, auth, {**never_spec, "max_attempts": 2})
        )
        attempts = await attempts_of(client, auth, never["id"])

    assert '<p>Counting: <span id="n">' in dom(busy)  # changing all along, read at the cap
    assert settled_ms(busy) >= 990
    assert (never["status"], never["error"]["code"]) == ("failed", "empty_page")
    assert "shows nothing" in never["error"]["message"]
    assert [a["error_code"] for a in attempts] == ["empty_page", "empty_page"]  # retried


def test_the_html_cut_counts_utf8_bytes_and_never_splits_a_character() -> None:
    from worker.engines.render import cut_utf8

    text = "aé漢😀" * 5  # 1, 2, 3 and 4 bytes
    whole = len(text.encode())
    for cap in range(whole + 2):
        cut, size = cut_utf8(text, cap)
        assert size == whole
        assert text.startswith(cut)
        assert len(cut.encode()) <= cap
        assert cap - len(cut.encode()) < 4 or cut == text  # only the split character is lost
    assert cut_utf8("a\ud800b", 10) == ("a\ud800b", 5)  # a lone surrogate counts, no crash
    assert cut_utf8("a\ud800b", 4) == ("a", 5)


async def test_a_rendered_page_past_the_cap_is_cut_in_bytes_at_a_character(
    client: httpx.AsyncClient, auth: dict[str, str], site: Site, run_worker: RunWorker
) -> None:
    cap = 4096
    script = "document.getElementById('t').textContent = 'Grüße, 漢字 😀 '.repeat(2000)"
    body = f"<p id='t'></p><script>{script}</script>"
    spec = render_job(site.url(f"/html?body={quote(body)}"), formats=["raw_html", "metadata"])
    async with browser_worker(run_worker, result_max_bytes=cap):
        job = await run(client, auth, spec)

    html = dom(job)
    assert "Grüße, 漢字 😀" in html
    assert cap - 4 < len(html.encode()) <= cap  # bytes, not characters: within one character
    assert "\ufffd" not in html  # no character cut in half
    metadata = job["result"]["metadata"]
    assert metadata["truncated"] is True
    assert metadata["bytes"] > 2000 * len("Grüße, 漢字 😀 ".encode())  # the whole page's size

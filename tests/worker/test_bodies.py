"""Whole bodies, end to end: `http` and `fetch` jobs read every byte, whatever the size, the
pieces and pauses, the framing (length, chunked, close) and the coding (gzip, deflate, br),
and a cut is reported, exactly at the cap.

Bodies and pacing come from a seeded generator: OUTRIDER_TEST_SEED replays a failure (the
seed is in every assertion message).
"""

from __future__ import annotations

import json
import os
import random
from typing import Any

import httpx

from tests.adversarial.drip import CODINGS, FRAMINGS, Coding, Framing, Reply, start_drip_server
from tests.conftest import RunWorker
from tests.helpers import http_job, wait_for_job
from tests.worker.support import submit
from tests.worker.test_politeness import UNLIMITED

SEED = int(os.environ.get("OUTRIDER_TEST_SEED") or random.randrange(2**32))
KB = 1000
MIB = 1024 * 1024
DEFAULT_CAP = MIB  # OUTRIDER_RESULT_MAX_BYTES by default
JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=utf-8"
# Printable ASCII for random bytes, and characters of 2, 3 and 4 bytes in UTF-8.
PRINTABLE = bytes(32 + n % 95 for n in range(256))
WIDE = [ch.encode() for ch in ("é", "ß", "漢", "€", "😀", "\n")]
NASTY = ['"', "\\", "\\\\", '\\"', "[", "]", "{", "}", "é", "\u2028", "😀", "\t"]


def random_text(rng: random.Random, size: int) -> bytes:
    """`size` bytes of valid UTF-8: ASCII runs with wide characters between them."""
    out = bytearray()
    while len(out) < size:
        out += rng.randbytes(min(size - len(out), rng.randint(1, 2000))).translate(PRINTABLE)
        wide = rng.choice(WIDE)
        if len(wide) <= size - len(out):
            out += wide
    return bytes(out)


def _record(rng: random.Random, n: int) -> dict[str, Any]:
    name = "".join(rng.choice(NASTY) if rng.random() < 0.3 else "x" for _ in range(12))
    return {
        "id": n,
        "name": name,
        "score": round(rng.uniform(-1000, 1000), 3),
        "big": rng.randint(-(2**62), 2**62),
        "flags": [rng.random() < 0.5, None],
        "nested": {"tags": [f"t{rng.randint(0, 99)}" for _ in range(rng.randint(0, 5))]},
    }


def random_json(rng: random.Random, size: int) -> bytes:
    """A JSON array of records, about `size` bytes (escaped or raw UTF-8, at random)."""
    records: list[dict[str, Any]] = []
    ascii_only = rng.random() < 0.5
    approx = 0
    while approx < size:
        records.append(_record(rng, len(records)))
        approx += len(json.dumps(records[-1], ensure_ascii=ascii_only)) + 2
    return json.dumps(records, ensure_ascii=ascii_only).encode()


def pick(rng: random.Random) -> dict[str, Any]:
    return {"framing": rng.choice(FRAMINGS), "coding": rng.choice(CODINGS)}


async def run_http_jobs(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    urls: list[str],
    **worker_settings: Any,
) -> list[dict[str, Any]]:
    """Submit one `http` job per URL at once, run a worker, return the finished jobs."""
    ids = [await submit(client, auth, http_job(url)) for url in urls]
    async with run_worker(**worker_settings):
        return [await wait_for_job(client, auth, job_id, timeout_s=120) for job_id in ids]


def assert_whole_text(job: dict[str, Any], sent: bytes, cap: int, what: str) -> None:
    """The result holds exactly the first `cap` bytes of `sent`, cut only past the cap."""
    assert job["status"] == "succeeded", f"seed {SEED}, {what}: {job.get('error')}"
    result = job["result"]
    kept = sent[:cap]
    assert result["body_bytes"] == len(kept), f"seed {SEED}, {what}: {result['body_bytes']}"
    assert result["body_truncated"] is (len(sent) > cap), f"seed {SEED}, {what}"
    assert result["body"] == kept.decode("utf-8", "replace"), f"seed {SEED}, {what}"


async def test_sixteen_bodies_at_once_come_back_whole(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    rng = random.Random(SEED)
    sent: dict[str, tuple[bytes, Reply]] = {}
    async with start_drip_server(SEED) as site:
        for n in range(16):
            size = int(10 * KB * 90 ** rng.random())  # 10 KB to 900 KB, evenly on a log scale
            is_json = n % 2 == 0
            body = random_json(rng, size) if is_json else random_text(rng, size)
            kind = JSON_TYPE if is_json else TEXT_TYPE
            reply = Reply(body, kind, FRAMINGS[n % 3], CODINGS[n % 4])
            sent[site.add(f"/b/{n}", reply)] = (body, reply)
        jobs = await run_http_jobs(client, auth, run_worker, list(sent))

    for (body, reply), job in zip(sent.values(), jobs, strict=True):
        what = f"{len(body)} bytes, {reply.framing}, {reply.coding}, {reply.content_type}"
        assert job["status"] == "succeeded", f"seed {SEED}, {what}: {job.get('error')}"
        result = job["result"]
        assert (result["body_bytes"], result["body_truncated"]) == (len(body), False), (
            f"seed {SEED}, {what}: {result['body_bytes']}"
        )
        if reply.content_type == JSON_TYPE:
            assert result["body_parse_error"] is None, f"seed {SEED}, {what}"
            assert result["body"] == json.loads(body), f"seed {SEED}, {what}"
        else:
            assert result["body"] == body.decode(), f"seed {SEED}, {what}"


async def test_sizes_around_the_cap_in_every_framing_and_coding(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    cap = 64 * 1024
    rng = random.Random(SEED + 1)
    sizes = [0, 1, 2, cap - 1, cap, cap + 1, 2 * cap]
    sizes += [rng.randint(1, 300 * KB) for _ in range(12)]
    sent: dict[str, tuple[bytes, Reply]] = {}
    async with start_drip_server(SEED, max_piece=8 * 1024) as site:
        for n, size in enumerate(sizes):
            body = random_text(rng, size)
            reply = Reply(body, **pick(rng))
            sent[site.add(f"/s/{n}", reply)] = (body, reply)
        jobs = await run_http_jobs(client, auth, run_worker, list(sent), result_max_bytes=cap)

    for (body, reply), job in zip(sent.values(), jobs, strict=True):
        assert_whole_text(job, body, cap, f"{len(body)} bytes, {reply.framing}, {reply.coding}")


async def test_at_the_default_cap_a_body_is_whole_and_past_it_exactly_the_cap(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    rng = random.Random(SEED + 2)
    three_mb = random_text(rng, 3_000_000)
    cases: list[tuple[bytes, Framing, Coding]] = [
        (three_mb, "length", "identity"),
        (three_mb, "chunked", "gzip"),
        (three_mb, "close", "br"),
        (random_text(rng, DEFAULT_CAP), "chunked", "deflate"),
        (random_text(rng, DEFAULT_CAP), "close", "identity"),
        (random_text(rng, DEFAULT_CAP + 1), "length", "gzip"),
    ]
    async with start_drip_server(SEED) as site:
        urls = [
            site.add(f"/c/{n}", Reply(body, framing=framing, coding=coding))
            for n, (body, framing, coding) in enumerate(cases)
        ]
        jobs = await run_http_jobs(client, auth, run_worker, urls)

    for (body, framing, coding), job in zip(cases, jobs, strict=True):
        assert_whole_text(job, body, DEFAULT_CAP, f"{len(body)} bytes, {framing}, {coding}")


async def test_a_cut_json_body_is_text_with_the_cut_reported(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    rng = random.Random(SEED + 3)
    body = random_json(rng, 3 * MIB)
    async with start_drip_server(SEED) as site:
        url = site.add("/big.json", Reply(body, JSON_TYPE, "chunked", "gzip"))
        (job,) = await run_http_jobs(client, auth, run_worker, [url])

    assert_whole_text(job, body, DEFAULT_CAP, "3 MiB of JSON")
    error = job["result"]["body_parse_error"]
    assert error == f"not parsed: the body was cut at {DEFAULT_CAP} bytes", f"seed {SEED}"


async def test_one_byte_and_empty_bodies(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    cases: list[tuple[bytes, str, Framing, Coding]] = [
        (body, kind, framing, coding)
        for body, kind in ((b"", TEXT_TYPE), (b"", JSON_TYPE), (b"7", TEXT_TYPE), (b"7", JSON_TYPE))
        for framing in FRAMINGS
        for coding in CODINGS
    ]
    async with start_drip_server(SEED) as site:
        urls = [site.add(f"/tiny/{n}", Reply(*case)) for n, case in enumerate(cases)]
        jobs = await run_http_jobs(client, auth, run_worker, urls)

    for (body, kind, framing, coding), job in zip(cases, jobs, strict=True):
        what = f"{body!r}, {kind}, {framing}, {coding}"
        assert job["status"] == "succeeded", f"{what}: {job.get('error')}"
        result = job["result"]
        expected: Any = 7 if body and kind == JSON_TYPE else body.decode()
        assert (result["body"], result["body_bytes"], result["body_truncated"]) == (
            expected,
            len(body),
            False,
        ), what
        assert result["body_parse_error"] is None, what  # an empty body is no JSON to parse


def fetch_job(url: str) -> dict[str, Any]:
    return {"kind": "fetch", "input": {"url": url, "formats": ["raw_html", "markdown"]}}


async def _fetch_all(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    urls: list[str],
    **worker_settings: Any,
) -> list[dict[str, Any]]:
    ids = [await submit(client, auth, {**fetch_job(url), "max_attempts": 1}) for url in urls]
    async with run_worker(**UNLIMITED, **worker_settings):
        return [await wait_for_job(client, auth, job_id, timeout_s=120) for job_id in ids]


async def test_fetch_reads_whole_pages_and_a_page_of_exactly_the_cap(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    cap = 64 * 1024
    rng = random.Random(SEED + 4)
    pages: list[tuple[bytes, Reply]] = []
    for framing in FRAMINGS:
        for coding in CODINGS:
            size = rng.choice([cap, cap + 1, rng.randint(1, cap)])
            pages.append((random_text(rng, size), Reply(b"", framing=framing, coding=coding)))
    document = random_json(rng, cap // 2)
    async with start_drip_server(SEED, max_piece=4 * 1024) as site:
        urls = [
            site.add(f"/page/{n}", Reply(body, TEXT_TYPE, reply.framing, reply.coding))
            for n, (body, reply) in enumerate(pages)
        ]
        urls.append(site.add("/doc.json", Reply(document, JSON_TYPE, "chunked", "br")))
        jobs = await _fetch_all(client, auth, run_worker, urls, fetch_max_bytes=cap)

    for (body, reply), job in zip(pages, jobs, strict=False):
        what = f"seed {SEED}: {len(body)} bytes, {reply.framing}, {reply.coding}"
        if len(body) > cap:
            assert job["status"] == "failed", what
            assert job["error"]["code"] == "response_too_large", what
        else:
            assert job["status"] == "succeeded", f"{what}: {job.get('error')}"
            assert job["result"]["raw_html"] == body.decode(), what
    pretty = json.dumps(json.loads(document), indent=2, ensure_ascii=False)
    assert jobs[-1]["result"]["markdown"] == f"```json\n{pretty}\n```", f"seed {SEED}"

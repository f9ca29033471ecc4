"""Hostile bodies: JSON nested thousands deep, lying Content-Lengths, compression bombs, broken
compression, made-up charsets, bodies that stall. Jobs finish with an honest answer, never
`internal_error`.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import uuid
import zlib
from typing import Any

import httpx
import pytest

from shared.egress import EgressPolicy
from shared.jsonsafe import PARSE_MAX_DEPTH, json_depth, parse_json, scrub
from shared.models import WebhookDelivery
from shared.settings import Settings
from tests.adversarial.drip import FRAMINGS, Coding, Framing, Reply, encode, start_drip_server
from tests.conftest import RunWorker
from tests.helpers import http_job, wait_for_job
from tests.worker.support import submit
from tests.worker.test_politeness import UNLIMITED
from worker.http_client import create_session
from worker.webhooks import Answer, send

SEED = int(os.environ.get("OUTRIDER_TEST_SEED") or random.randrange(2**32))
JSON_TYPE = "application/json"
MIB = 1024 * 1024
# What JSON strings may hold that looks like structure: quotes, runs of backslashes, brackets.
NASTY = ['"', "\\", "\\\\", '\\"', '\\\\"', "[", "]", "{", "}", "[[", "]]}", "é", "😀", "\n"]


def nested(depth: int) -> str:
    """A JSON text nesting `depth` levels: objects and arrays by turns, a string at the core."""
    text = '"core"'
    for level in range(depth):
        text = f'{{"k{level}": {text}}}' if level % 2 else f"[1, {text}]"
    return text


def reference_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((reference_depth(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((reference_depth(item) for item in value), default=0)
    return 0


def nasty_value(rng: random.Random, depth: int) -> Any:
    """A random JSON value at most `depth` deep whose strings hold brackets, quotes, escapes."""
    roll = rng.random()
    if depth == 0 or roll < 0.3:
        return "".join(rng.choice(NASTY) for _ in range(rng.randint(0, 8)))
    if roll < 0.4:
        return rng.choice([None, True, 12, -3.5])
    items = [nasty_value(rng, depth - 1) for _ in range(rng.randint(0, 4))]
    if roll < 0.7:
        return items
    return {"".join(rng.choice(NASTY) for _ in range(3)) + str(n): v for n, v in enumerate(items)}


def test_the_depth_check_agrees_with_the_parser() -> None:
    rng = random.Random(SEED)
    for n in range(500):
        value = nasty_value(rng, rng.randint(0, 12))
        text = json.dumps(value, ensure_ascii=n % 2 == 0, indent=rng.choice([None, 1]))
        assert json_depth(text) == reference_depth(value), f"seed {SEED}, case {n}: {text}"


@pytest.mark.parametrize(
    "text",
    [
        "[" * 1_000_000,
        '{"a":' * 200_000,
        "[" * 5000 + "]" * 5000,
        '"' + "\\" * 100_001,
        '["' + '\\"' * 100_000,
        '"\\"' * 100_000,
        "[1" + ", [" * 3000,
        '[{"a": "]]]]"}, ' * 1000 + "[" * 70,
    ],
)
def test_hostile_texts_get_a_parse_error_never_an_exception(text: str) -> None:
    parsed = parse_json(text)
    assert parsed.value is None
    assert parsed.error is not None
    assert len(parsed.error) <= 200


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps(["[" * 5000, {"k": "{" * 5000 + '\\"]' * 100}])
    assert parse_json(text).value == json.loads(text)


def test_a_body_at_the_parse_limit_is_stored_as_parsed() -> None:
    value = parse_json(nested(PARSE_MAX_DEPTH)).value
    assert reference_depth(value) == PARSE_MAX_DEPTH
    result = {"status": 200, "body": value}
    assert scrub(result) == result  # nothing flattened to text on the way to the database


async def run_jobs(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    run_worker: RunWorker,
    specs: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    ids = [await submit(client, auth, spec) for spec in specs]
    async with run_worker(**UNLIMITED):
        return [await wait_for_job(client, auth, job_id, timeout_s=60) for job_id in ids]


@pytest.mark.postgres
async def test_deep_json_is_text_with_a_parse_error_and_the_limit_is_parsed(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    depths = [PARSE_MAX_DEPTH, PARSE_MAX_DEPTH + 1, 1000, 5000]
    async with start_drip_server(SEED) as site:
        urls = [
            site.add(f"/deep/{depth}", Reply(nested(depth).encode(), JSON_TYPE, "chunked"))
            for depth in depths
        ]
        jobs = await run_jobs(client, auth, run_worker, [http_job(url) for url in urls])

    assert [(job["status"], job["attempts"]) for job in jobs] == [("succeeded", 1)] * 4, jobs
    at_limit, *too_deep = (job["result"] for job in jobs)
    assert at_limit["body"] == json.loads(nested(PARSE_MAX_DEPTH))  # stored in JSONB, read back
    assert at_limit["body_parse_error"] is None
    for depth, result in zip(depths[1:], too_deep, strict=True):
        assert result["body"] == nested(depth)
        assert result["body_parse_error"] == f"JSON nested deeper than {PARSE_MAX_DEPTH} levels"
        assert (result["body_truncated"], result["body_bytes"]) == (False, len(nested(depth)))


async def test_a_fetch_of_deep_json_keeps_it_as_received(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    deep = nested(5000)
    async with start_drip_server(SEED) as site:
        url = site.add("/deep.json", Reply(deep.encode(), JSON_TYPE, "close", "gzip"))
        spec = {"kind": "fetch", "input": {"url": url, "formats": ["markdown", "raw_html"]}}
        (job,) = await run_jobs(client, auth, run_worker, [spec])

    assert job["status"] == "succeeded", job
    assert job["result"] == {"markdown": f"```json\n{deep}\n```", "raw_html": deep}


async def test_a_lying_content_length_is_never_taken_for_the_body(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    body = b"0123456789" * 1000
    async with start_drip_server(SEED) as site:
        longer = site.add("/longer", Reply(body, declared_length=len(body) + 500))
        shorter = site.add("/shorter", Reply(body, declared_length=4000))
        fetched = site.add("/fetched", Reply(body, declared_length=len(body) * 2))
        specs = [
            {**http_job(longer), "max_attempts": 2},
            http_job(shorter),
            {"kind": "fetch", "input": {"url": fetched}, "max_attempts": 1},
        ]
        cut_short, declared, fetch = await run_jobs(client, auth, run_worker, specs)

    # The connection closed before the declared length: a failed read, retried, never a
    # short body passed off as whole.
    assert (cut_short["status"], cut_short["attempts"]) == ("failed", 2)
    assert cut_short["error"]["code"] == "connection_error"
    assert "payload is not completed" in cut_short["error"]["message"]
    assert site.hits["/longer"] == 4  # a quick retry inside each attempt
    assert (fetch["status"], fetch["error"]["code"]) == ("failed", "connection_error")
    # Bytes past the declared length belong to no response: aiohttp takes the declared ones, and
    # fails the exchange when the rest arrives with them (they cannot start a response).
    if declared["status"] == "succeeded":
        assert declared["result"]["body"] == body[:4000].decode()
        assert declared["result"]["body_truncated"] is False
    else:
        assert declared["error"]["code"] == "connection_error", declared


async def test_bombs_broken_streams_and_made_up_charsets(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    bomb = b"a" * (64 * MIB)  # a few hundred KiB gzipped
    async with start_drip_server(SEED) as site:
        urls = [
            site.add("/bomb", Reply(bomb, framing="chunked", coding="gzip")),
            site.add("/broken", Reply(b"\x1f\x8b not gzip at all" * 50, coding="gzip", as_is=True)),
            site.add("/bogus", Reply(b'{"caf\xc3\xa9": [1]}', f"{JSON_TYPE}; charset=no-such")),
            site.add("/base64", Reply("naïve".encode(), "text/plain; charset=base64")),
        ]
        specs = [{**http_job(url), "max_attempts": 1} for url in urls]
        bomb_job, broken_job, bogus_job, base64_job = await run_jobs(
            client, auth, run_worker, specs
        )

    assert bomb_job["status"] == "succeeded", bomb_job
    bombed = bomb_job["result"]
    assert (bombed["body_bytes"], bombed["body_truncated"]) == (MIB, True)
    assert bombed["body"] == "a" * MIB
    assert broken_job["status"] == "failed", broken_job
    assert broken_job["error"]["code"] == "content_decoding_failed"
    assert bogus_job["result"]["body"] == {"café": [1]}  # an unknown charset reads as UTF-8
    assert base64_job["result"]["body"] == "naïve"


async def test_a_broken_compressed_stream_fails_content_decoding_failed_once_not_retried(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    # Each coding in another framing: every framing carries a broken stream once.
    broken: list[tuple[Coding, Framing, bytes]] = [
        ("gzip", "length", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"not deflate " * 40),
        ("deflate", "chunked", b"\x78\x9c" + b"not deflate data " * 40),
        ("br", "close", b"\xff\xff not brotli " * 40),
    ]
    async with start_drip_server(SEED) as site:
        specs = []
        for coding, framing, body in broken:
            reply = Reply(body, "text/html; charset=utf-8", framing, coding, as_is=True)
            for kind in ("http", "fetch", "scrape"):
                url = site.add(f"/{kind}/{coding}", reply)
                fields = {"render": "http"} if kind == "scrape" else {}
                specs.append({"kind": kind, "input": {"url": url, **fields}})
        jobs = await run_jobs(client, auth, run_worker, specs)

    for job in jobs:
        assert job["status"] == "failed", job
        assert job["error"]["code"] == "content_decoding_failed", job
        assert job["error"]["retryable"] is False
        assert job["attempts"] == 1  # the server's bytes, not the network: not tried again
    assert set(site.hits.values()) == {1}, site.hits  # nor quickly inside the attempt


async def test_a_body_that_stops_midway_times_out_never_comes_back_partial(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    async with start_drip_server(SEED) as site:
        url = site.add("/stalls", Reply(b"x" * 5000, framing="chunked", stall_s=60))
        spec = {"kind": "http", "input": {"url": url, "timeout_s": 1}, "max_attempts": 1}
        (job,) = await run_jobs(client, auth, run_worker, [spec])

    assert (job["status"], job["error"]["code"]) == ("failed", "timeout"), job
    assert job["error"]["message"] == "The call took longer than 1.0 s."
    assert site.hits["/stalls"] == 2  # the quick retry inside the attempt


async def test_a_webhook_answer_that_never_ends_is_not_waited_for(settings: Settings) -> None:
    # Deliveries read the status line only: an endless answer cannot hold a delivery slot.
    async with start_drip_server(SEED) as site:
        url = site.add("/hook", Reply(b"ok" * 1000, framing="chunked", stall_s=60))
        delivery = WebhookDelivery(
            id=uuid.uuid4(), event_id=uuid.uuid4(), event="job.succeeded", url=url, payload={}
        )
        http = create_session(EgressPolicy.from_settings(settings))
        try:
            answer = await send(http, delivery, "webhook-secret", timeout_s=5)
        finally:
            await http.close()

    assert answer == Answer(delivered=True, status_code=200)
    assert site.hits["/hook"] == 1


def _cut(coding: Coding, body: bytes) -> bytes:
    """`body` coded, then cut in the middle of its compressed stream."""
    coded = encode(body, coding)
    return coded[: len(coded) // 2]


async def test_a_compressed_body_cut_short_never_succeeds_in_any_framing(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    # aiohttp checks only deflate for its end: a gzip page cut in half came back as a shorter
    # page, `succeeded`. Every coding in every framing, http and fetch.
    body = random.Random(SEED).randbytes(30_000).hex().encode()
    codings: list[Coding] = ["gzip", "deflate", "br"]
    async with start_drip_server(SEED) as site:
        specs = []
        for coding in codings:
            for framing in FRAMINGS:
                reply = Reply(_cut(coding, body), "text/html", framing, coding, as_is=True)
                for kind in ("http", "fetch"):
                    url = site.add(f"/{kind}/{coding}/{framing}", reply)
                    specs.append({"kind": kind, "input": {"url": url}, "max_attempts": 2})
        jobs = await run_jobs(client, auth, run_worker, specs)

    cases = [(c, f, k) for c in codings for f in FRAMINGS for k in ("http", "fetch")]
    for (coding, framing, _kind), job in zip(cases, jobs, strict=True):
        assert job["status"] == "failed", job
        assert job["error"]["code"] == "content_decoding_failed", job
        assert "cut short" in job["error"]["message"]
        # A close-delimited body ends with the connection, as a dropped one does: tried again.
        assert job["attempts"] == (2 if framing == "close" else 1), (coding, framing, job)


async def test_gzip_members_in_a_row_raw_deflate_and_trailing_bytes_read_whole(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    first, second = b"first member " * 3000, b"second member " * 3000
    raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    raw_deflate = raw.compress(first) + raw.flush()
    sent: dict[str, tuple[bytes, Coding, bytes]] = {
        "/members": (gzip.compress(first) + gzip.compress(second), "gzip", first + second),
        "/trailing": (gzip.compress(first) + b"\r\n\r\n", "gzip", first),
        "/raw-deflate": (raw_deflate, "deflate", first),
    }
    async with start_drip_server(SEED) as site:
        specs = [
            http_job(site.add(path, Reply(data, "text/plain", "chunked", coding, as_is=True)))
            for path, (data, coding, _whole) in sent.items()
        ]
        jobs = await run_jobs(client, auth, run_worker, specs)

    for (path, (_data, _coding, whole)), job in zip(sent.items(), jobs, strict=True):
        assert job["status"] == "succeeded", (path, job)
        assert job["result"]["body"] == whole.decode(), path
        assert job["result"]["body_truncated"] is False

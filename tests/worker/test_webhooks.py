"""Webhooks from a worker: signed deliveries, retries with backoff, no redirects, the egress
policy (an internal URL is never called), per-agent and per-job URLs, and the hot path."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web
from sqlalchemy import event, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.crypto import SecretBox
from shared.models import (
    Agent,
    AttemptOutcome,
    DeliveryStatus,
    Job,
    JobStatus,
    WebhookDelivery,
    utcnow,
)
from shared.repositories.agent import open_webhook_secret
from shared.repositories.execution import Outcome, claim_job, record_outcome, release_orphan
from shared.repositories.webhooks import add_deliveries, claim_due, render_payload
from shared.settings import Settings
from tests.conftest import RunWorker
from tests.helpers import TargetServer, http_job, serve_aiohttp, wait_for_job
from tests.worker.support import eventually, insert_http_job, make_owner, submit, when
from worker import webhooks as webhook_worker
from worker.webhooks import retry_delay_s

FAST = {"webhook_backoff_base_s": 0.05, "webhook_backoff_max_s": 0.2}
HOOK_URL = "http://127.0.0.1:9/hook"  # never served: the rows are only looked at


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A loopback webhook receiver: fails the first `fail_first` requests with a 500, or
    redirects every request to `redirect_to`; otherwise answers 200."""

    fail_first: int = 0
    redirect_to: str | None = None
    base_url: str = ""
    received: list[Received] = field(default_factory=list)

    def url(self, path: str = "/hook") -> str:
        return self.base_url + path

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.path, dict(request.headers), await request.read()))
        if self.redirect_to is not None:
            raise web.HTTPFound(self.redirect_to)
        if len(self.received) <= self.fail_first:
            return web.Response(status=500, text="not now")
        return web.Response(text="thanks")


@contextlib.asynccontextmanager
async def serve(receiver: Receiver, host: str = "127.0.0.1") -> AsyncIterator[Receiver]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    async with serve_aiohttp(app, host) as url:
        receiver.base_url = url
        yield receiver


def assert_signed(received: Received, secret: str) -> dict[str, Any]:
    """Check the signature over timestamp and body as a receiver would; returns the body."""
    timestamp = received.headers["Outrider-Timestamp"]
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + received.body, hashlib.sha256
    ).hexdigest()
    assert received.headers["Outrider-Signature"] == f"t={timestamp},v1={expected}"
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers["User-Agent"] == "Outrider-Webhooks/0.1"
    payload: dict[str, Any] = json.loads(received.body)
    assert received.headers["Outrider-Event-Id"] == payload["id"]
    assert received.headers["Outrider-Event"] == payload["type"]
    return payload


async def deliveries(
    client: httpx.AsyncClient, auth: dict[str, str], job_id: str
) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/jobs/{job_id}/deliveries", headers=auth)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def settled(
    client: httpx.AsyncClient, auth: dict[str, str], job_id: str, count: int = 1
) -> list[dict[str, Any]]:
    """The job's deliveries once `count` of them exist and none is pending any more."""
    found: list[dict[str, Any]] = []

    async def done() -> bool:
        nonlocal found
        found = await deliveries(client, auth, job_id)
        return len(found) == count and all(d["status"] != "pending" for d in found)

    await eventually(done, 20, f"deliveries of {job_id} settle")
    return found


async def new_agent(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: Any
) -> tuple[str, str]:
    """Create an agent; returns its id and the webhook secret shown once."""
    name = f"agent-{uuid.uuid4().hex[:6]}"
    created = await client.post("/v1/agents", json={"name": name, **fields}, headers=auth)
    assert created.status_code == 201, created.text
    return created.json()["id"], created.json()["webhook_secret"]


def test_backoff_reaches_the_fourth_attempt_about_half_a_minute_later(settings: Settings) -> None:
    base, cap = settings.webhook_backoff_base_s, settings.webhook_backoff_max_s
    for _ in range(50):
        waited = sum(retry_delay_s(n, base, cap) for n in (1, 2, 3))
        assert 0.9 * 26 <= waited <= 1.1 * 26  # 2 + 6 + 18 s, give or take the jitter
        assert retry_delay_s(30, base, cap) <= cap
    assert retry_delay_s(10_000, base, cap) <= cap


async def test_receiver_failing_three_times_gets_the_fourth_signed(
    client: httpx.AsyncClient, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    async with serve(Receiver(fail_first=3)) as receiver, run_worker(**FAST):
        agent_id, secret = await new_agent(client, auth)
        spec = {**http_job(target.url("/json")), "agent_id": agent_id}
        job_id = await submit(client, auth, {**spec, "webhook_url": receiver.url()})
        job = await wait_for_job(client, auth, job_id)
        assert job["status"] == "succeeded"
        (delivery,) = await settled(client, auth, job_id)

    assert len(receiver.received) == 4
    bodies = {r.body for r in receiver.received}
    assert len(bodies) == 1, "every attempt sends the same bytes"
    payload = assert_signed(receiver.received[-1], secret)
    assert payload["type"] == "job.succeeded"
    assert payload["id"] == delivery["event_id"]
    assert payload["job"]["id"] == job_id
    assert payload["job"]["status"] == "succeeded"
    assert payload["job"]["agent_id"] == agent_id
    assert payload["job"]["result"]["status"] == 200
    assert payload["job"]["result_omitted"] is False
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 4
    assert delivery["last_status_code"] == 200
    assert delivery["source"] == "job"
    assert delivery["url"] == receiver.url()
    assert delivery["delivered_at"] is not None
    assert delivery["next_attempt_at"] is None
    assert delivery["last_error"] is None  # it describes the last attempt


async def test_redirect_is_not_followed(
    client: httpx.AsyncClient, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    async with (
        serve(Receiver()) as second,
        serve(Receiver(redirect_to=second.url("/elsewhere"))) as first,
        run_worker(**FAST, webhook_max_age_s=1.5),
    ):
        job_id = await submit(
            client, auth, {**http_job(target.url("/ok")), "webhook_url": first.url()}
        )
        (delivery,) = await settled(client, auth, job_id)

    assert second.received == [], "the redirect's target was called"
    assert len(first.received) >= 2, "a 3xx is a failed attempt, retried"
    assert delivery["status"] == "failed", "retries stop after webhook_max_age_s"
    assert delivery["attempts"] == len(first.received)
    assert delivery["last_status_code"] == 302
    assert "redirect" in delivery["last_error"]


async def test_retries_stop_after_max_age(
    client: httpx.AsyncClient, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    async with (
        serve(Receiver(fail_first=1_000)) as receiver,
        run_worker(**FAST, webhook_max_age_s=2.0),
    ):
        job_id = await submit(
            client, auth, {**http_job(target.url("/ok")), "webhook_url": receiver.url()}
        )
        (delivery,) = await settled(client, auth, job_id)
    assert delivery["status"] == "failed"
    assert delivery["attempts"] == len(receiver.received) >= 2
    assert delivery["last_status_code"] == 500
    created, last = when(delivery["created_at"]), when(delivery["last_attempt_at"])
    # The last attempt is at the deadline (give or take a poll), not a backoff step past it.
    assert 1.9 <= (last - created).total_seconds() < 2.0 + 3.0


async def test_url_inside_the_network_is_never_called(
    client: httpx.AsyncClient, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    # The API (loopback allowed) accepts 127.0.0.2; the worker allows only 127.0.0.1/32.
    async with (
        serve(Receiver(), host="127.0.0.2") as canary,
        run_worker(**FAST, egress_allow_cidrs=["127.0.0.1/32"]),
    ):
        job_id = await submit(
            client, auth, {**http_job(target.url("/ok")), "webhook_url": canary.url()}
        )
        (delivery,) = await settled(client, auth, job_id)
    assert canary.received == []
    assert delivery["status"] == "blocked"
    assert delivery["attempts"] == 1
    assert delivery["last_status_code"] is None
    assert "127.0.0.2" in delivery["last_error"]


async def test_agent_and_job_webhooks_both_fire(
    client: httpx.AsyncClient, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    async with serve(Receiver()) as receiver, run_worker(**FAST):
        agent_id, secret = await new_agent(client, auth, webhook_url=receiver.url("/agent"))
        both = await submit(
            client,
            auth,
            {**http_job(target.url("/ok")), "agent_id": agent_id, "webhook_url": receiver.url()},
        )
        agent_only = await submit(
            client, auth, {**http_job(target.url("/status/404")), "agent_id": agent_id}
        )
        pair = await settled(client, auth, both, count=2)
        (failed,) = await settled(client, auth, agent_only)

    assert sorted((d["source"], d["url"], d["status"]) for d in pair) == [
        ("agent", receiver.url("/agent"), "delivered"),
        ("job", receiver.url(), "delivered"),
    ]
    assert len(receiver.received) == 3
    assert {r.path for r in receiver.received} == {"/agent", "/hook"}
    signed = [assert_signed(r, secret) for r in receiver.received]
    succeeded = [p for p in signed if p["job"]["id"] == both]
    assert len(succeeded) == 2
    assert {p["id"] for p in succeeded} == {pair[0]["event_id"]}
    assert all(p["type"] == "job.succeeded" for p in succeeded)
    (failure,) = [p for p in signed if p["job"]["id"] == agent_only]
    assert failure["type"] == "job.failed"
    assert failure["job"]["status"] == "failed"
    assert failure["job"]["error"]["code"] == "http_4xx"
    assert failed["source"] == "agent"


async def test_cancelled_job_is_announced_with_a_lazily_made_secret(
    client: httpx.AsyncClient,
    target: TargetServer,
    run_worker: RunWorker,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    owner = await make_owner(sessionmaker)  # its default agent has no webhook secret yet
    async with serve(Receiver()) as receiver:
        spec = {**http_job(target.url("/ok")), "webhook_url": receiver.url()}
        response = await client.post("/v1/jobs", json=spec, headers=owner.auth)
        job_id = response.json()["id"]
        cancel = await client.post(f"/v1/jobs/{job_id}/cancel", headers=owner.auth)
        assert cancel.json()["status"] == "cancelled"
        async with run_worker(**FAST):
            (delivery,) = await settled(client, owner.auth, job_id)

    async with sessionmaker() as session:
        sealed = await session.scalar(
            select(Agent.webhook_secret_ciphertext).where(Agent.id == owner.agent_id)
        )
    assert sealed is not None, "the first delivery gave the default agent a secret"
    secret = open_webhook_secret(SecretBox(settings.resolved_secret_key()), sealed)
    (received,) = receiver.received
    payload = assert_signed(received, secret)
    assert payload["type"] == "job.cancelled"
    assert payload["job"]["status"] == "cancelled"
    assert payload["job"]["finished_at"] is not None
    assert delivery["status"] == "delivered"
    assert delivery["event"] == "job.cancelled"


@contextlib.contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Collect the SQL statements run on `engine` while the block runs."""
    seen: list[str] = []

    def record(conn: Connection, cursor: Any, sql: str, *args: Any) -> None:
        seen.append(sql.split(None, 1)[0].upper())

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


@pytest.mark.parametrize("webhook_url", [None, HOOK_URL])
async def test_ending_a_job_without_webhooks_costs_no_extra_query(
    sessionmaker: async_sessionmaker[AsyncSession], webhook_url: str | None
) -> None:
    owner = await make_owner(sessionmaker)
    job = await insert_http_job(sessionmaker, owner, "http://127.0.0.1:9/")
    async with sessionmaker.begin() as session:
        await session.execute(update(Job).where(Job.id == job.id).values(webhook_url=webhook_url))
        claim = await claim_job(session, job.id, "test-worker", 10)
        assert claim is not None
    engine = sessionmaker.kw["bind"]
    outcome = Outcome(status=JobStatus.SUCCEEDED, attempt_outcome=AttemptOutcome.SUCCEEDED)
    async with sessionmaker.begin() as session:
        await session.connection()  # BEGIN is not what is measured
        with statements(engine) as seen:
            assert await record_outcome(session, job.id, claim.fence, outcome)
    if webhook_url is None:
        assert seen == ["UPDATE", "UPDATE"]  # the job (RETURNING its URLs), the attempt
    else:
        assert seen == ["UPDATE", "SELECT", "INSERT", "UPDATE"]
        async with sessionmaker() as session:
            rows = (
                await session.scalars(
                    select(WebhookDelivery).where(WebhookDelivery.job_id == job.id)
                )
            ).all()
        assert [(r.event, r.source, r.url, r.status) for r in rows] == [
            ("job.succeeded", "job", webhook_url, DeliveryStatus.PENDING)
        ]


async def test_two_workers_send_each_delivery_once(
    client: httpx.AsyncClient, auth: dict[str, str], target: TargetServer, run_worker: RunWorker
) -> None:
    async with serve(Receiver()) as receiver:
        spec = {**http_job(target.url("/ok")), "webhook_url": receiver.url()}
        response = await client.post("/v1/jobs/batch", json={"jobs": [spec] * 40}, headers=auth)
        job_ids = [job["id"] for job in response.json()["jobs"]]
        for job_id in job_ids:  # cancelled while queued: announced without running
            assert (await client.post(f"/v1/jobs/{job_id}/cancel", headers=auth)).is_success
        async with run_worker(**FAST), run_worker(**FAST):
            await eventually(
                lambda: _count_at_least(receiver, len(job_ids)), 20, "every job announced"
            )
            for job_id in job_ids:
                (delivery,) = await settled(client, auth, job_id)
                assert delivery["attempts"] == 1
    event_ids = [r.headers["Outrider-Event-Id"] for r in receiver.received]
    assert len(event_ids) == len(set(event_ids)) == len(job_ids)


async def _count_at_least(receiver: Receiver, count: int) -> bool:
    return len(receiver.received) >= count


def test_a_large_result_is_left_out_of_the_payload() -> None:
    job = Job(
        id=uuid.uuid4(),
        agent_id=uuid.uuid4(),
        kind="fetch",
        status=JobStatus.SUCCEEDED,
        attempts=1,
        created_at=utcnow(),
        finished_at=utcnow(),
        result={"markdown": "x" * (256 * 1024)},
    )
    event_id = uuid.uuid4()
    payload = render_payload(job, "job.succeeded", event_id, utcnow())
    assert payload["job"]["result"] is None
    assert payload["job"]["result_omitted"] is True
    assert payload["id"] == str(event_id)
    job.result = {"markdown": "small"}
    small = render_payload(job, "job.succeeded", event_id, utcnow())["job"]
    assert small["result"] == {"markdown": "small"}
    assert small["result_omitted"] is False
    assert small["created_at"].endswith("Z")


async def test_claims_are_bounded_and_disjoint(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    owner = await make_owner(sessionmaker)
    for _ in range(8):
        job = await insert_http_job(sessionmaker, owner, "http://127.0.0.1:9/")
        async with sessionmaker.begin() as session:
            await add_deliveries(session, job.id, JobStatus.CANCELLED, "http://127.0.0.1:9/h", None)
    now = utcnow()
    async with sessionmaker.begin() as first:
        taken = await claim_due(first, now, 5, 60)
        assert len(taken) == 5
        if sessionmaker.kw["bind"].dialect.name == "postgresql":
            # While the first claim is open, a second one skips its rows.
            async with sessionmaker.begin() as second:
                others = await claim_due(second, now, 5, 60)
    if sessionmaker.kw["bind"].dialect.name != "postgresql":
        async with sessionmaker.begin() as second:
            others = await claim_due(second, now, 5, 60)
    assert len(others) == 3
    assert not {d.id for d in taken} & {d.id for d in others}
    assert all(d.attempts == 1 and d.next_attempt_at is not None for d in [*taken, *others])
    async with sessionmaker.begin() as third:
        assert await claim_due(third, now, 5, 60) == [], "claimed rows are leased"


async def test_a_lost_job_out_of_attempts_is_announced(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    owner = await make_owner(sessionmaker)
    job = await insert_http_job(sessionmaker, owner, "http://127.0.0.1:9/", max_attempts=1)
    async with sessionmaker.begin() as session:
        await session.execute(update(Job).where(Job.id == job.id).values(webhook_url=HOOK_URL))
        claim = await claim_job(session, job.id, "dead-worker", 10)
        assert claim is not None
    async with sessionmaker.begin() as session:  # what the reconciler does for a dead worker
        released = await release_orphan(session, job.id, claim.fence)
    assert released is not None
    assert not released.requeued
    async with sessionmaker() as session:
        (row,) = (
            await session.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == job.id))
        ).all()
    assert (row.event, row.url, row.status) == ("job.failed", HOOK_URL, DeliveryStatus.PENDING)
    assert row.payload["job"]["status"] == "failed"
    assert row.payload["job"]["error"]["code"] == "worker_lost"


async def test_the_loop_outlives_database_errors(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    target: TargetServer,
    run_worker: RunWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failures = 0

    async def flaky_claim(*args: Any, **kwargs: Any) -> list[WebhookDelivery]:
        nonlocal failures
        if failures < 3:
            failures += 1
            raise OperationalError("UPDATE webhook_delivery", {}, ConnectionRefusedError())
        return await claim_due(*args, **kwargs)

    monkeypatch.setattr(webhook_worker, "claim_due", flaky_claim)
    async with serve(Receiver()) as receiver, run_worker(**FAST):
        job_id = await submit(
            client, auth, {**http_job(target.url("/ok")), "webhook_url": receiver.url()}
        )
        (delivery,) = await settled(client, auth, job_id)
    assert failures == 3
    assert delivery["status"] == "delivered"
    assert len(receiver.received) == 1


async def test_a_crawl_is_announced_once_and_its_pages_not_at_all(
    client: httpx.AsyncClient, auth: dict[str, str], run_worker: RunWorker
) -> None:
    from tests.crawl_site import serve_site
    from tests.helpers import wait_for_job

    async with serve(Receiver()) as receiver, serve_site(pages=3) as site, run_worker(**FAST):
        agent_id, secret = await new_agent(
            client,
            auth,
            webhook_url=receiver.url("/agent"),
            host_rate_per_s=1000,
            host_concurrency=50,
        )
        spec = {
            "kind": "crawl",
            "agent_id": agent_id,
            "webhook_url": receiver.url(),
            "input": {"url": site.url("/"), "max_depth": 1, "sitemap": "skip"},
        }
        crawl_id = await submit(client, auth, spec)
        job = await wait_for_job(client, auth, crawl_id, timeout_s=60)
        assert job["status"] == "succeeded", job
        pair = await settled(client, auth, crawl_id, count=2)

    assert {(d["source"], d["status"]) for d in pair} == {
        ("agent", "delivered"),
        ("job", "delivered"),
    }
    signed = [assert_signed(r, secret) for r in receiver.received]
    assert {p["job"]["id"] for p in signed} == {crawl_id}  # no page announced
    assert all(p["type"] == "job.succeeded" for p in signed)
    assert signed[0]["job"]["result"]["pages"]["succeeded"] == 2

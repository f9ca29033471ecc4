"""Webhook deliveries: written with the transition that ends a job, then claimed and settled
by the workers' delivery loop (worker/webhooks.py).

A job's end is announced to the job's `webhook_url` and to its agent's: one row per distinct
URL, in the transaction that ends the job, so no terminal state goes unannounced. The payload
is rendered once, here, and stored in the row: every retry sends the same body.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import ScalarSelect, Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from shared.crypto import SecretBox
from shared.db import is_postgres
from shared.ids import new_id
from shared.models import Agent, DeliveryStatus, Job, JobStatus, WebhookDelivery, utcnow
from shared.repositories.agent import new_webhook_secret, seal_webhook_secret

EVENTS = {
    JobStatus.SUCCEEDED: "job.succeeded",
    JobStatus.FAILED: "job.failed",
    JobStatus.CANCELLED: "job.cancelled",
}
# A result larger than this (as JSON) is left out of the payload (`result_omitted`).
RESULT_MAX_BYTES = 256 * 1024


def webhook_urls() -> tuple[InstrumentedAttribute[str | None], ScalarSelect[str | None]]:
    """RETURNING columns for an UPDATE of a job: its webhook URL and its live agent's. A job
    without webhooks then costs no query beyond the UPDATE that ends it."""
    agent_url = (
        select(Agent.webhook_url)
        .where(Agent.id == Job.agent_id, Agent.deleted_at.is_(None))
        .scalar_subquery()
    )
    return Job.webhook_url, agent_url


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def render_payload(job: Job, event: str, event_id: uuid.UUID, now: datetime) -> dict[str, Any]:
    """The JSON body announcing `event` for `job` (its result left out above 256 KB)."""
    result = job.result
    omitted = result is not None and len(json.dumps(result)) > RESULT_MAX_BYTES
    return {
        "id": str(event_id),
        "type": event,
        "created_at": _iso(now),
        "job": {
            "id": str(job.id),
            "kind": job.kind,
            "status": job.status,
            "attempts": job.attempts,
            "agent_id": str(job.agent_id),
            "created_at": _iso(job.created_at),
            "finished_at": _iso(job.finished_at),
            "error": job.error,
            "result": None if omitted else result,
            "result_omitted": omitted,
        },
    }


async def add_deliveries(
    session: AsyncSession,
    job_id: uuid.UUID,
    status: JobStatus,
    job_url: str | None,
    agent_url: str | None,
) -> int:
    """Queue the announcement of the job's new terminal `status` to each distinct URL (the
    values `webhook_urls()` returned); returns how many. No URL: no statement at all."""
    targets = [(url, source) for url, source in ((job_url, "job"), (agent_url, "agent")) if url]
    if len(targets) == 2 and job_url == agent_url:
        targets = targets[:1]
    if not targets:
        return 0
    job = await session.scalar(
        select(Job).where(Job.id == job_id).execution_options(populate_existing=True)
    )
    assert job is not None  # the caller just updated it, in this transaction
    if job.parent_id is not None:  # a crawl's page: only its own webhook_url (page_webhooks)
        targets = [(url, source) for url, source in targets if source == "job"]
        if not targets:
            return 0
    now, event_id, event = utcnow(), new_id(), EVENTS[status]
    payload = render_payload(job, event, event_id, now)
    rows = [
        {
            "id": new_id(),
            "owner_id": job.owner_id,
            "job_id": job.id,
            "agent_id": job.agent_id,
            "event_id": event_id,
            "event": event,
            "source": source,
            "url": url,
            "payload": payload,
            "status": DeliveryStatus.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for url, source in targets
    ]
    await session.execute(insert(cast(Table, WebhookDelivery.__table__)), rows)
    return len(rows)


async def list_deliveries(session: AsyncSession, job_id: uuid.UUID) -> list[WebhookDelivery]:
    """The job's deliveries, oldest first."""
    rows = await session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.job_id == job_id)
        .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
    )
    return list(rows.all())


async def claim_due(
    session: AsyncSession, now: datetime, limit: int, lease_s: float
) -> list[WebhookDelivery]:
    """Take up to `limit` pending deliveries that are due, counting the attempt and pushing
    `next_attempt_at` forward by `lease_s` (a lease: a worker that dies mid-send leaves the
    row to be tried again after it). PostgreSQL: the rows are locked first, skipping those
    another worker is claiming. SQLite: one atomic statement (one writer at a time)."""
    due = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    if is_postgres(session):
        # Two statements: PostgreSQL may run a locking subquery of an UPDATE once per outer
        # row, and then its LIMIT no longer bounds the claim.
        ids = list(await session.scalars(due.with_for_update(skip_locked=True)))
        if not ids:
            return []
        chosen = WebhookDelivery.id.in_(ids)
    else:
        chosen = WebhookDelivery.id.in_(due.scalar_subquery())
    claimed = await session.scalars(
        update(WebhookDelivery)
        .where(
            chosen,
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .values(
            attempts=WebhookDelivery.attempts + 1,
            last_attempt_at=now,
            next_attempt_at=now + timedelta(seconds=lease_s),
        )
        .returning(WebhookDelivery)
        .execution_options(synchronize_session=False)
    )
    return list(claimed.all())


async def webhook_secrets(
    session: AsyncSession, box: SecretBox, agent_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, bytes]:
    """The sealed webhook secret of each agent, generating one for an agent that has none
    (default agents, agents from before webhooks). Concurrent workers agree on one."""
    ids = list(set(agent_ids))
    rows = await session.execute(
        select(Agent.id, Agent.webhook_secret_ciphertext).where(Agent.id.in_(ids))
    )
    found: dict[uuid.UUID, bytes | None] = {row[0]: row[1] for row in rows}
    sealed: dict[uuid.UUID, bytes] = {}
    for agent_id, ciphertext in found.items():
        if ciphertext is None:
            ciphertext = seal_webhook_secret(box, new_webhook_secret())
            set_now = await session.execute(
                update(Agent)
                .where(Agent.id == agent_id, Agent.webhook_secret_ciphertext.is_(None))
                .values(webhook_secret_ciphertext=ciphertext)
            )
            if set_now.rowcount == 0:  # type: ignore[attr-defined]  # another worker won
                ciphertext = await session.scalar(
                    select(Agent.webhook_secret_ciphertext).where(Agent.id == agent_id)
                )
        if ciphertext is not None:
            sealed[agent_id] = ciphertext
    return sealed


async def settle(
    session: AsyncSession, delivery_id: uuid.UUID, attempt: int, values: dict[str, Any]
) -> bool:
    """Record how attempt number `attempt` went; False if the row has moved on (the lease
    ran out and another worker took it)."""
    result = await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.attempts == attempt,
            WebhookDelivery.status == DeliveryStatus.PENDING,
        )
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]

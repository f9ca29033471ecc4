"""Webhook delivery: a loop in every worker that POSTs due deliveries, signed, through the
egress policy, and retries failed ones with backoff until `webhook_max_age_s` has passed.

Rows are claimed with a lease (shared/repositories/webhooks.py), so any number of workers
share the work and a worker that dies mid-send leaves its rows to be tried again. Delivery is
therefore at least once: a worker killed after the receiver answered but before the answer
was recorded sends again; receivers dedupe on the event id. Redirects are never followed (a
3xx is a failed attempt), and a URL the egress policy refuses is never called (`blocked`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from shared.errors import EgressBlocked
from shared.logging import describe, get_logger
from shared.models import DeliveryStatus, WebhookDelivery, utcnow
from shared.repositories.agent import open_webhook_secret
from shared.repositories.webhooks import claim_due, settle, webhook_secrets
from shared.settings import Settings
from worker.lifecycle import LOOP_ERRORS
from worker.state import WorkerState

log = get_logger(__name__)

POLL_INTERVAL_S = 0.5
MAX_IN_FLIGHT = 16  # deliveries one worker process sends at once
LEASE_MARGIN_S = 30.0  # a claim's lease beyond the request timeout: time to record the answer
USER_AGENT = "Outrider-Webhooks/0.1"
ERROR_MAX_CHARS = 500
NO_TIMEOUT = aiohttp.ClientTimeout(total=None)  # asyncio.timeout bounds the whole exchange


def body_bytes(payload: dict[str, Any]) -> bytes:
    """The exact bytes sent and signed: compact JSON with sorted keys, so every attempt of a
    delivery sends the same body (the stored payload never changes)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `Outrider-Signature` header: `t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>." + body)>`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def retry_delay_s(attempts: int, base_s: float, cap_s: float) -> float:
    """How long to wait after the `attempts`-th failed attempt: base * 3^(attempts-1), capped,
    within 10% either way (so receivers that failed together are not hit together)."""
    exp = min(cap_s, base_s * 3.0 ** min(max(attempts - 1, 0), 50))
    return min(cap_s, exp * random.uniform(0.9, 1.1))


@dataclass(frozen=True)
class Answer:
    """How one attempt went."""

    delivered: bool = False
    blocked: bool = False
    status_code: int | None = None
    error: str | None = None


def _headers(delivery: WebhookDelivery, secret: str, body: bytes) -> dict[str, str]:
    timestamp = int(time.time())
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Outrider-Event-Id": str(delivery.event_id),
        "Outrider-Event": delivery.event,
        "Outrider-Timestamp": str(timestamp),
        "Outrider-Signature": signature(secret, timestamp, body),
    }


async def send(
    http: aiohttp.ClientSession, delivery: WebhookDelivery, secret: str, timeout_s: float
) -> Answer:
    """POST the delivery once (no redirect followed) through the egress-guarded session."""
    body = body_bytes(delivery.payload)
    headers = _headers(delivery, secret, body)
    try:
        async with (
            asyncio.timeout(timeout_s),
            http.post(
                delivery.url, data=body, headers=headers, allow_redirects=False, timeout=NO_TIMEOUT
            ) as response,
        ):
            status = response.status
    except EgressBlocked as exc:
        return Answer(blocked=True, error=f"{exc.code}: {exc}")
    except TimeoutError:
        return Answer(error=f"timeout: no answer within {timeout_s:g} s")
    except (aiohttp.ClientError, OSError) as exc:
        return Answer(error=f"{type(exc).__name__}: {exc}")
    if 200 <= status < 300:
        return Answer(delivered=True, status_code=status)
    if 300 <= status < 400:
        return Answer(status_code=status, error=f"HTTP {status}: redirects are not followed")
    return Answer(status_code=status, error=f"HTTP {status}")


def settled_values(
    answer: Answer, delivery: WebhookDelivery, settings: Settings, now: datetime
) -> dict[str, Any]:
    """The row's new columns after an attempt: delivered, blocked, failed for good (past
    `webhook_max_age_s`), or pending with the next attempt scheduled (never past that age)."""
    error = answer.error[:ERROR_MAX_CHARS] if answer.error else None
    values: dict[str, Any] = {"last_status_code": answer.status_code, "last_error": error}
    if answer.delivered:
        delivered = {"status": DeliveryStatus.DELIVERED, "delivered_at": now}
        return {**values, **delivered, "next_attempt_at": None}
    if answer.blocked:
        return {**values, "status": DeliveryStatus.BLOCKED, "next_attempt_at": None}
    deadline = delivery.created_at + timedelta(seconds=settings.webhook_max_age_s)
    if now >= deadline:
        return {**values, "status": DeliveryStatus.FAILED, "next_attempt_at": None}
    delay = retry_delay_s(
        delivery.attempts, settings.webhook_backoff_base_s, settings.webhook_backoff_max_s
    )
    # The last retry lands on the deadline itself rather than a backoff step before it.
    return {**values, "next_attempt_at": min(now + timedelta(seconds=delay), deadline)}


class WebhookSender:
    """Claims due deliveries and sends them, at most MAX_IN_FLIGHT at once per process."""

    def __init__(self, state: WorkerState) -> None:
        self.state = state
        self.in_flight: set[asyncio.Task[None]] = set()

    async def run_once(self) -> int:
        """Claim what is due (as many as there are free slots) and start sending it."""
        free = MAX_IN_FLIGHT - len(self.in_flight)
        if free <= 0:
            return 0
        settings = self.state.settings
        lease_s = settings.webhook_timeout_s + LEASE_MARGIN_S
        async with self.state.sessionmaker.begin() as session:
            claimed = await claim_due(session, utcnow(), free, lease_s)
            agent_ids = {delivery.agent_id for delivery in claimed}
            sealed = await webhook_secrets(session, self.state.box, agent_ids) if claimed else {}
        for delivery in claimed:
            task = asyncio.create_task(self.deliver(delivery, sealed.get(delivery.agent_id)))
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)
        return len(claimed)

    async def _attempt(self, delivery: WebhookDelivery, sealed: bytes | None) -> Answer:
        try:
            secret = open_webhook_secret(self.state.box, sealed) if sealed else None
        except (RuntimeError, KeyError) as exc:  # OUTRIDER_SECRET_KEY changed: retry later
            return Answer(error=f"the agent's webhook secret cannot be read: {exc}")
        if secret is None:
            return Answer(error="the agent has no webhook secret")
        timeout_s = self.state.settings.webhook_timeout_s
        async with self.state.sessions.lease(delivery.owner_id) as http:  # a tenant wall
            return await send(http, delivery, secret, timeout_s)

    async def deliver(self, delivery: WebhookDelivery, sealed: bytes | None) -> None:
        """One attempt of one delivery, and its record (fenced on the attempt number)."""
        ids = {"delivery_id": str(delivery.id), "job_id": str(delivery.job_id)}
        try:
            answer = await self._attempt(delivery, sealed)
            values = settled_values(answer, delivery, self.state.settings, utcnow())
            async with self.state.sessionmaker.begin() as session:
                recorded = await settle(session, delivery.id, delivery.attempts, values)
        except LOOP_ERRORS as exc:  # the lease runs out and the delivery is tried again
            log.warning("webhook.record_failed", **ids, error=describe(exc))
            return
        except Exception:
            log.exception("webhook.crashed", **ids)
            return
        status = values.get("status", DeliveryStatus.PENDING)
        log.info(
            "webhook.attempted",
            **ids,
            webhook_event=delivery.event,
            attempt=delivery.attempts,
            status=str(status),
            status_code=answer.status_code,
            recorded=recorded,
        )

    async def loop(self) -> None:
        """Poll for due deliveries until cancelled; survives database outages."""
        try:
            while True:
                try:
                    await self.run_once()
                except LOOP_ERRORS as exc:
                    log.warning("webhook.claim_failed", error=describe(exc))
                if len(self.in_flight) >= MAX_IN_FLIGHT:  # busy: go on as soon as a slot frees
                    await asyncio.wait(
                        self.in_flight,
                        timeout=POLL_INTERVAL_S,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                else:
                    await asyncio.sleep(POLL_INTERVAL_S)
        finally:
            # Unrecorded attempts are tried again once their lease runs out.
            for task in self.in_flight:
                task.cancel()
            await asyncio.gather(*self.in_flight, return_exceptions=True)


async def webhook_loop(state: WorkerState) -> None:
    """The background loop that delivers webhooks (one per worker process)."""
    await WebhookSender(state).loop()

"""`AsyncOutrider`: the asyncio client (httpx.AsyncClient); the same methods as `Outrider`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import date, datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from outrider_client import models
from outrider_client._core import (
    STREAM_READ_TIMEOUT_S,
    Call,
    JobId,
    JobSpec,
    Routes,
    SSEParser,
    default_headers,
    error_from,
    events_request,
    new_idempotency_key,
    raise_for,
    reconnect_pause,
    resolve_key,
    resolve_url,
    retry_delay,
    server_wait,
)
from outrider_client.errors import ConnectionFailed, WaitTimeout

T = TypeVar("T")
MAX_STREAM_FAILURES = 5


class AsyncOutrider:
    """A client of one Outrider API. `url` defaults to OUTRIDER_URL (else
    http://127.0.0.1:8000), `key` to OUTRIDER_API_KEY. A 503 is retried up to `max_retries`
    times after its Retry-After; every other error raises a typed `OutriderError`."""

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = resolve_url(url)
        self.key = resolve_key(key)
        self.timeout = timeout
        self.max_retries = max_retries
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=default_headers(self.key),
            timeout=timeout,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncOutrider:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, call: Call[Any], limits: httpx.Timeout) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    json=call.json,
                    headers=call.headers,
                    timeout=limits,
                )
            except httpx.TransportError as exc:
                raise ConnectionFailed(f"{self.url}: {exc!r}") from exc
            delay = retry_delay(response, attempt, self.max_retries)
            if delay is None:
                return response
            await asyncio.sleep(delay)
            attempt += 1

    async def _call(self, call: Call[T], wait: float | None = None) -> T:
        limits = httpx.Timeout(self.timeout, read=self.timeout + (server_wait(wait) or 0.0))
        response = await self._send(call, limits)
        raise_for(response)
        return call.parse(response)

    # Jobs

    async def submit(
        self, spec: JobSpec, *, wait: float | None = None, idempotency_key: str | None = None
    ) -> models.Job:
        """Submit one job (`{"kind": ..., "input": {...}}`, a mapping or a pydantic model).
        An Idempotency-Key is made for the call if none is given, so a retried submit never
        queues the job twice. With `wait`, return once the job has ended or `wait` seconds
        have passed (check `job.ended`), whichever is first."""
        started = time.monotonic()
        key = idempotency_key or new_idempotency_key()
        job = await self._call(Routes.submit(spec, wait, key), wait)
        remaining = (wait or 0.0) - (time.monotonic() - started)
        if job.ended or remaining <= 0:
            return job
        try:  # a wait beyond what one request may hold
            return await self.wait(job.id, timeout=remaining)
        except WaitTimeout:
            return await self.get_job(job.id)

    async def submit_batch(
        self, specs: Iterable[JobSpec], *, wait: float | None = None
    ) -> list[models.Job]:
        """Submit up to 1,000 jobs at once (all or none); with `wait` (at most 60 s), return
        once all have ended or the time is up."""
        return await self._call(Routes.submit_batch(specs, wait), wait)

    async def get_job(self, job_id: JobId) -> models.Job:
        return await self._call(Routes.get_job(job_id))

    async def list_jobs(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        agent_id: JobId | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> models.JobList:
        """One page of your jobs, newest first; pass `next_cursor` on for the next."""
        call = Routes.list_jobs(
            status, kind, agent_id, created_after, created_before, cursor, limit
        )
        return await self._call(call)

    async def iter_jobs(self, **filters: Any) -> AsyncIterator[models.Job]:
        """Every job matching `list_jobs`' filters, page after page."""
        cursor = None
        while True:
            page = await self.list_jobs(**filters, cursor=cursor)
            for job in page.items:
                yield job
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def attempts(self, job_id: JobId) -> list[models.Attempt]:
        return (await self._call(Routes.attempts(job_id))).items

    async def cancel(self, job_id: JobId) -> models.Job:
        return await self._call(Routes.cancel(job_id))

    async def retry(self, job_id: JobId) -> models.Job:
        return await self._call(Routes.retry(job_id))

    async def deliveries(self, job_id: JobId) -> list[models.Delivery]:
        return (await self._call(Routes.deliveries(job_id))).items

    async def wait(
        self,
        job_id: JobId,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the same signature as Outrider.wait
    ) -> models.Job:
        """Block until the job ends (following its events) and return it; `WaitTimeout`
        if `timeout` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        path, params = events_request(job_id, None, None)
        async for event in self._stream(path, params, SSEParser(), str(job_id), deadline):
            if event.terminal:
                break
        return await self.get_job(job_id)

    async def events(
        self,
        job_id: JobId | None = None,
        *,
        kinds: Iterable[str] | None = None,
        types: Iterable[str] | None = None,
        last_event_id: str | None = None,
    ) -> AsyncIterator[models.Event]:
        """Live events: one job's (replayed from its first, ending with its last) or, without
        `job_id`, all of yours from now on (filter by job `kinds` and event `types`). A dropped
        stream is resumed where it stopped (Last-Event-ID); pass `last_event_id` to resume a
        stream you read before."""
        path, params = events_request(job_id, kinds, types)
        parser = SSEParser(last_event_id)
        ended_by = None if job_id is None else str(job_id)
        async for event in self._stream(path, params, parser, ended_by, None):
            yield event

    async def _stream(
        self,
        path: str,
        params: dict[str, Any],
        parser: SSEParser,
        job_id: str | None,
        deadline: float | None,
    ) -> AsyncIterator[models.Event]:
        """Events of one stream, reconnecting after a drop; a job's ends with its last."""
        failures = 0
        while True:
            read_s = STREAM_READ_TIMEOUT_S
            if deadline is not None:
                read_s = min(read_s, deadline - time.monotonic())
                if read_s <= 0:
                    raise WaitTimeout("The job had not ended in time.", job_id=str(job_id))
            headers = {"Last-Event-ID": parser.last_event_id} if parser.last_event_id else {}
            timeout = httpx.Timeout(self.timeout, read=read_s)
            try:
                async with self._http.stream(
                    "GET", path, params=params, headers=headers, timeout=timeout
                ) as response:
                    if response.status_code == 204:
                        return  # the job ended and everything was told
                    if response.status_code >= 400:
                        await response.aread()
                        raise error_from(response)
                    failures = 0
                    async for line in response.aiter_lines():
                        event = parser.feed(line)
                        if event is not None:
                            yield event
                            if job_id is not None and event.terminal:
                                return
            except httpx.TransportError as exc:
                failures += 1
                if failures > MAX_STREAM_FAILURES and not isinstance(exc, httpx.ReadTimeout):
                    raise ConnectionFailed(f"{self.url}{path}: {exc!r}") from exc
                await asyncio.sleep(reconnect_pause(parser.retry_ms, failures))

    # Agents, artifacts, schedules, status

    async def create_agent(self, name: str, **fields: Any) -> models.AgentCreated:
        return await self._call(Routes.create_agent({"name": name, **fields}))

    async def list_agents(
        self, *, cursor: str | None = None, limit: int | None = None
    ) -> models.AgentList:
        return await self._call(Routes.list_agents(cursor, limit))

    async def get_agent(self, agent_id: JobId) -> models.Agent:
        return await self._call(Routes.get_agent(agent_id))

    async def update_agent(self, agent_id: JobId, changes: Mapping[str, Any]) -> models.Agent:
        return await self._call(Routes.update_agent(agent_id, changes))

    async def delete_agent(self, agent_id: JobId) -> None:
        await self._call(Routes.delete_agent(agent_id))

    async def list_sessions(self, agent_id: JobId) -> models.SessionList:
        """The agent's sessions (names and times)."""
        return await self._call(Routes.list_sessions(agent_id))

    async def delete_session(self, agent_id: JobId, name: str) -> None:
        """Forget an agent's session (its cookies and browser storage)."""
        await self._call(Routes.delete_session(agent_id, name))

    async def new_webhook_secret(self, agent_id: JobId) -> models.WebhookSecret:
        return await self._call(Routes.new_webhook_secret(agent_id))

    async def artifact(self, artifact_id: JobId) -> models.Artifact:
        return await self._call(Routes.artifact(artifact_id))

    async def create_schedule(self, schedule: Mapping[str, Any]) -> models.Schedule:
        return await self._call(Routes.create_schedule(schedule))

    async def list_schedules(
        self, *, cursor: str | None = None, limit: int | None = None
    ) -> models.ScheduleList:
        return await self._call(Routes.list_schedules(cursor, limit))

    async def get_schedule(self, schedule_id: JobId) -> models.Schedule:
        return await self._call(Routes.get_schedule(schedule_id))

    async def update_schedule(
        self, schedule_id: JobId, changes: Mapping[str, Any]
    ) -> models.Schedule:
        return await self._call(Routes.update_schedule(schedule_id, changes))

    async def delete_schedule(self, schedule_id: JobId) -> None:
        await self._call(Routes.delete_schedule(schedule_id))

    async def run_schedule(self, schedule_id: JobId) -> models.Job:
        return await self._call(Routes.run_schedule(schedule_id))

    async def schedule_runs(
        self, schedule_id: JobId, *, cursor: str | None = None, limit: int | None = None
    ) -> models.ScheduleRunList:
        return await self._call(Routes.schedule_runs(schedule_id, cursor, limit))

    async def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET any route of the API (e.g. one newer than this client) and return its JSON."""
        return await self._call(Routes.get_json(path, params))

    async def health(self) -> models.Health:
        return await self._call(Routes.health())

    async def ready(self) -> models.Health:
        return await self._call(Routes.ready())

    async def usage(self, *, start: date | None = None, end: date | None = None) -> models.Usage:
        """Your jobs, pages, bytes fetched and browser seconds by UTC day and kind, from
        `start` to `end` (both included; default the last 30 days)."""
        return await self._call(Routes.usage(start, end))

    async def queue_status(self) -> models.QueueStatus:
        return await self._call(Routes.queue_status())

    async def retry_failed(self, **filters: Any) -> models.BulkRetry:
        """Queue again the failed jobs matching `filters` (kind, agent_id, q, created_after,
        created_before, limit), newest first; `more` says further ones match."""
        return await self._call(Routes.retry_failed(filters))

    async def pause_queue(self, name: str) -> models.QueueControl:
        """Stop workers taking the queue's jobs (owners in OUTRIDER_ADMIN_OWNERS only)."""
        return await self._call(Routes.set_queue_paused(name, True))

    async def resume_queue(self, name: str) -> models.QueueControl:
        return await self._call(Routes.set_queue_paused(name, False))

    async def workers(self) -> list[models.Worker]:
        return (await self._call(Routes.workers())).workers

"""What the sync and async clients share: configuration, each route as a `Call`, the answer's
parsing, errors, the retry rule and the Server-Sent Events parser. No I/O here."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from outrider_client import models
from outrider_client._version import __version__
from outrider_client.errors import BY_STATUS, APIError, ServerError

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

DEFAULT_URL = "http://127.0.0.1:8000"
MAX_SERVER_WAIT_S = 60.0  # the API's cap on `?wait=`
MAX_RETRY_AFTER_S = 60.0
STREAM_READ_TIMEOUT_S = 60.0  # the API sends a heartbeat every 15 s on an idle stream

JobSpec = Mapping[str, Any] | BaseModel
JobId = str | uuid.UUID


def resolve_url(url: str | None) -> str:
    """The API's base URL: the argument, else OUTRIDER_URL, else the local default."""
    return (url or os.environ.get("OUTRIDER_URL") or DEFAULT_URL).rstrip("/")


def resolve_key(key: str | None) -> str | None:
    """The API key: the argument, else OUTRIDER_API_KEY."""
    return key or os.environ.get("OUTRIDER_API_KEY") or None


def default_headers(key: str | None) -> dict[str, str]:
    headers = {"User-Agent": f"outrider-client/{__version__}", "Accept": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request to the API and how to read its answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def _model(model: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: model.model_validate_json(response.content)


def _nothing(response: httpx.Response) -> None:
    return None


def _artifact(response: httpx.Response) -> models.Artifact:
    content_type = response.headers.get("content-type", "application/octet-stream")
    return models.Artifact(content=response.content, content_type=content_type)


def _json(response: httpx.Response) -> Any:
    return response.json()


def _jobs(response: httpx.Response) -> list[models.Job]:
    return models.Batch.model_validate_json(response.content).jobs


def spec_json(spec: JobSpec) -> Any:
    """A job spec as JSON: a mapping as it is, a pydantic model dumped."""
    if isinstance(spec, BaseModel):
        return spec.model_dump(mode="json", exclude_none=True, by_alias=True)
    return dict(spec)


def _params(**values: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out


def server_wait(wait: float | None) -> float | None:
    return None if wait is None else max(0.0, min(float(wait), MAX_SERVER_WAIT_S))


class Routes:
    """Every route of the API, as a `Call` (the clients send them)."""

    @staticmethod
    def submit(spec: JobSpec, wait: float | None, idempotency_key: str) -> Call[models.Job]:
        return Call(
            "POST",
            "/v1/jobs",
            _model(models.Job),
            params=_params(wait=server_wait(wait)),
            json=spec_json(spec),
            headers={"Idempotency-Key": idempotency_key},
        )

    @staticmethod
    def submit_batch(specs: Iterable[JobSpec], wait: float | None) -> Call[list[models.Job]]:
        body = {"jobs": [spec_json(spec) for spec in specs]}
        return Call("POST", "/v1/jobs/batch", _jobs, _params(wait=server_wait(wait)), body)

    @staticmethod
    def get_job(job_id: JobId) -> Call[models.Job]:
        return Call("GET", f"/v1/jobs/{job_id}", _model(models.Job))

    @staticmethod
    def list_jobs(
        status: str | None = None,
        kind: str | None = None,
        agent_id: JobId | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Call[models.JobList]:
        params = _params(
            status=status,
            kind=kind,
            agent_id=agent_id and str(agent_id),
            created_after=created_after,
            created_before=created_before,
            cursor=cursor,
            limit=limit,
        )
        return Call("GET", "/v1/jobs", _model(models.JobList), params)

    @staticmethod
    def attempts(job_id: JobId) -> Call[models.AttemptList]:
        return Call("GET", f"/v1/jobs/{job_id}/attempts", _model(models.AttemptList))

    @staticmethod
    def cancel(job_id: JobId) -> Call[models.Job]:
        return Call("POST", f"/v1/jobs/{job_id}/cancel", _model(models.Job))

    @staticmethod
    def retry(job_id: JobId) -> Call[models.Job]:
        return Call("POST", f"/v1/jobs/{job_id}/retry", _model(models.Job))

    @staticmethod
    def deliveries(job_id: JobId) -> Call[models.DeliveryList]:
        return Call("GET", f"/v1/jobs/{job_id}/deliveries", _model(models.DeliveryList))

    @staticmethod
    def health() -> Call[models.Health]:
        return Call("GET", "/healthz", _model(models.Health))

    @staticmethod
    def ready() -> Call[models.Health]:
        return Call("GET", "/readyz", _model(models.Health))

    @staticmethod
    def create_agent(body: Mapping[str, Any]) -> Call[models.AgentCreated]:
        return Call("POST", "/v1/agents", _model(models.AgentCreated), json=dict(body))

    @staticmethod
    def list_agents(cursor: str | None, limit: int | None) -> Call[models.AgentList]:
        params = _params(cursor=cursor, limit=limit)
        return Call("GET", "/v1/agents", _model(models.AgentList), params)

    @staticmethod
    def get_agent(agent_id: JobId) -> Call[models.Agent]:
        return Call("GET", f"/v1/agents/{agent_id}", _model(models.Agent))

    @staticmethod
    def update_agent(agent_id: JobId, changes: Mapping[str, Any]) -> Call[models.Agent]:
        path = f"/v1/agents/{agent_id}"
        return Call("PATCH", path, _model(models.Agent), json=dict(changes))

    @staticmethod
    def delete_agent(agent_id: JobId) -> Call[None]:
        return Call("DELETE", f"/v1/agents/{agent_id}", _nothing)

    @staticmethod
    def list_sessions(agent_id: JobId) -> Call[models.SessionList]:
        return Call("GET", f"/v1/agents/{agent_id}/sessions", _model(models.SessionList))

    @staticmethod
    def delete_session(agent_id: JobId, name: str) -> Call[None]:
        return Call("DELETE", f"/v1/agents/{agent_id}/sessions/{quote(name, safe='')}", _nothing)

    @staticmethod
    def new_webhook_secret(agent_id: JobId) -> Call[models.WebhookSecret]:
        path = f"/v1/agents/{agent_id}/webhook-secret"
        return Call("POST", path, _model(models.WebhookSecret))

    @staticmethod
    def artifact(artifact_id: JobId) -> Call[models.Artifact]:
        return Call("GET", f"/v1/artifacts/{artifact_id}", _artifact)

    @staticmethod
    def create_schedule(body: Mapping[str, Any]) -> Call[models.Schedule]:
        return Call("POST", "/v1/schedules", _model(models.Schedule), json=dict(body))

    @staticmethod
    def list_schedules(cursor: str | None, limit: int | None) -> Call[models.ScheduleList]:
        params = _params(cursor=cursor, limit=limit)
        return Call("GET", "/v1/schedules", _model(models.ScheduleList), params)

    @staticmethod
    def get_schedule(schedule_id: JobId) -> Call[models.Schedule]:
        return Call("GET", f"/v1/schedules/{schedule_id}", _model(models.Schedule))

    @staticmethod
    def update_schedule(schedule_id: JobId, changes: Mapping[str, Any]) -> Call[models.Schedule]:
        path = f"/v1/schedules/{schedule_id}"
        return Call("PATCH", path, _model(models.Schedule), json=dict(changes))

    @staticmethod
    def delete_schedule(schedule_id: JobId) -> Call[None]:
        return Call("DELETE", f"/v1/schedules/{schedule_id}", _nothing)

    @staticmethod
    def run_schedule(schedule_id: JobId) -> Call[models.Job]:
        return Call("POST", f"/v1/schedules/{schedule_id}/run", _model(models.Job))

    @staticmethod
    def schedule_runs(
        schedule_id: JobId, cursor: str | None, limit: int | None
    ) -> Call[models.ScheduleRunList]:
        params = _params(cursor=cursor, limit=limit)
        path = f"/v1/schedules/{schedule_id}/runs"
        return Call("GET", path, _model(models.ScheduleRunList), params)

    @staticmethod
    def get_json(path: str, params: Mapping[str, Any] | None) -> Call[Any]:
        return Call("GET", path, _json, dict(params or {}))

    @staticmethod
    def usage(start: date | None = None, end: date | None = None) -> Call[models.Usage]:
        params = {"start": start, "end": end}
        query = {name: value.isoformat() for name, value in params.items() if value is not None}
        return Call("GET", "/v1/usage", _model(models.Usage), params=query)

    @staticmethod
    def queue_status() -> Call[models.QueueStatus]:
        return Call("GET", "/v1/queue", _model(models.QueueStatus))

    @staticmethod
    def retry_failed(filters: Mapping[str, Any]) -> Call[models.BulkRetry]:
        return Call("POST", "/v1/jobs/retry", _model(models.BulkRetry), json=dict(filters))

    @staticmethod
    def set_queue_paused(name: str, paused: bool) -> Call[models.QueueControl]:
        action = "pause" if paused else "resume"
        return Call("POST", f"/v1/queues/{name}/{action}", _model(models.QueueControl))

    @staticmethod
    def workers() -> Call[models.WorkerList]:
        return Call("GET", "/v1/workers", _model(models.WorkerList))


def new_idempotency_key() -> str:
    return f"oc-{uuid.uuid4().hex}"


def events_request(
    job_id: JobId | None, kinds: Iterable[str] | None, types: Iterable[str] | None
) -> tuple[str, dict[str, Any]]:
    """The path and query of an event stream: one job's, or all of the owner's."""
    if job_id is not None:
        return f"/v1/jobs/{job_id}/events", {}
    params: dict[str, Any] = {}
    if kinds:
        params["kind"] = list(kinds)
    if types:
        params["status"] = list(types)
    return "/v1/events", params


def error_from(response: httpx.Response) -> APIError:
    """The typed exception for an error answer (the API's code when it sent one)."""
    code, message, details = None, response.reason_phrase or "error", None
    try:
        error = response.json()["error"]
        code, message, details = error["code"], error["message"], error.get("details")
    except (ValueError, KeyError, TypeError):
        message = f"HTTP {response.status_code}: {response.text[:200]}"
    kind = BY_STATUS.get(response.status_code)
    if kind is None:
        kind = ServerError if response.status_code >= 500 else APIError
    return kind(
        message,
        status_code=response.status_code,
        code=code,
        details=details,
        retry_after=retry_after(response),
    )


def retry_after(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds (a number or an HTTP date), if any."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(moment.tzinfo)).total_seconds())


def retry_delay(response: httpx.Response, attempt: int, max_retries: int) -> float | None:
    """How long to wait before sending again (None: do not): only a 503 is retried, after
    its Retry-After (capped) or an exponential backoff."""
    if response.status_code != 503 or attempt >= max_retries:
        return None
    given = retry_after(response)
    if given is not None:
        return min(given, MAX_RETRY_AFTER_S)
    return float(min(0.5 * 2**attempt, 8.0))


def raise_for(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise error_from(response)


class SSEParser:
    """Server-Sent Events, one line at a time; remembers the last id (to resume from)."""

    def __init__(self, last_event_id: str | None = None) -> None:
        self.last_event_id = last_event_id
        self.retry_ms: int | None = None
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> models.Event | None:
        """Take one line (without its newline); returns an event when one is complete."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> models.Event | None:
        data, ident = self._data, self._id
        self._data, self._id = [], None
        if not data:
            return None
        if ident:
            self.last_event_id = ident
        payload = json.loads("\n".join(data))
        payload["id"] = ident or None
        return models.Event.model_validate(payload)


def reconnect_pause(retry_ms: int | None, failures: int) -> float:
    """How long to wait before reconnecting a dropped stream: at once the first time, then
    the server's `retry` (at most 5 s)."""
    return 0.0 if failures <= 1 else min((retry_ms or 1000) / 1000, 5.0)

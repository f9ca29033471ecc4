"""The retry policy: which failures are worth another try, and how long to wait.

Two levels. tenacity retries quickly inside one attempt (a reset connection, a 503 that says
"retry after 1 s"); arq's `Retry` defers the job across runs with exponential backoff and
jitter. Only timeouts, connection errors and 408/425/429/5xx are retried; other 4xx never.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from shared.errors import EgressBlocked
from shared.job_errors import JobErrorCode, http_status_code, is_known, is_retryable_status
from worker.bodies import ContentDecodingError
from worker.proxy_tunnel import ProxyFailed

T = TypeVar("T")

RETRY_AFTER_MAX_S = 3600.0
MESSAGE_MAX_CHARS = 500  # a library's message can quote kilobytes of a response


class Deferred(Exception):
    """Not now, through no fault of the job (e.g. waiting for a per-host slot): run it again
    after `delay_s` without using up an attempt."""

    def __init__(self, delay_s: float, reason: str) -> None:
        super().__init__(reason)
        self.delay_s = delay_s
        self.reason = reason


class JobError(Exception):
    """A failure with a stable code (shared/job_errors.py: a JobErrorCode, or an HTTP status's
    `http_*` code); `retryable` decides between backoff and `failed`."""

    def __init__(
        self,
        code: JobErrorCode | str,
        message: str,
        *,
        retryable: bool,
        retry_after_s: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        if not is_known(code):
            raise ValueError(f"{code!r} is not a job error code (shared/job_errors.py)")
        if len(message) > MESSAGE_MAX_CHARS:
            message = message[:MESSAGE_MAX_CHARS] + "…"
        super().__init__(message)
        self.code = str(code)
        self.message = message
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        """The job's `error` field."""
        error: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
        }
        if self.details:
            error["details"] = self.details
        return error


def status_error(status: int, retry_after: str | None) -> JobError:
    """The error for an HTTP status a job did not expect: `http_<status>` (retryable, honouring
    Retry-After) for 408/425/429/5xx, else `http_4xx`-style (never retried)."""
    return JobError(
        http_status_code(status),
        f"The server answered {status}.",
        retryable=is_retryable_status(status),
        retry_after_s=parse_retry_after(retry_after),
        details={"status": status},
    )


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_MAX_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(delta, 0.0), RETRY_AFTER_MAX_S)


def backoff_s(attempt: int, base_s: float, cap_s: float, retry_after_s: float | None) -> float:
    """Exponential backoff with jitter for the given attempt (1-based); never sooner than
    the server's Retry-After."""
    exp: float = min(cap_s, base_s * 2.0 ** max(attempt - 1, 0))
    delay = exp * random.uniform(0.5, 1.0)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay


def classify(exc: BaseException) -> JobError:
    """Turn whatever an engine raised into a JobError."""
    if isinstance(exc, JobError):
        return exc
    if isinstance(exc, EgressBlocked):
        return JobError(exc.code, str(exc), retryable=False)
    if isinstance(exc, ProxyFailed):  # the runner moves on to the next proxy first
        return JobError(JobErrorCode.PROXY_UNAVAILABLE, str(exc), retryable=True)
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return JobError(JobErrorCode.TIMEOUT, "The request timed out.", retryable=True)
    if isinstance(exc, aiohttp.TooManyRedirects):
        return JobError(JobErrorCode.TOO_MANY_REDIRECTS, "Too many redirects.", retryable=False)
    if isinstance(exc, aiohttp.InvalidURL):
        return JobError(JobErrorCode.INVALID_URL, f"Invalid URL: {exc}", retryable=False)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return JobError(
            JobErrorCode.DNS_NOT_FOUND, "The host name could not be resolved.", retryable=False
        )
    if isinstance(exc, ContentDecodingError):
        # The server's content, not the network: the same bytes would fail again. Only a
        # close-delimited body cut short may be a dropped connection, worth another attempt.
        return JobError(
            JobErrorCode.CONTENT_DECODING_FAILED,
            exc.message,
            retryable=exc.dropped,
        )
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return JobError(JobErrorCode.TLS_ERROR, f"TLS failed: {exc}", retryable=False)
    if isinstance(exc, aiohttp.ClientError | ConnectionError | OSError):
        return JobError(JobErrorCode.CONNECTION_ERROR, f"Connection failed: {exc}", retryable=True)
    return JobError(JobErrorCode.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", retryable=True)


def _quick_wait(state: RetryCallState) -> float:
    return random.uniform(0.1, 0.5)


def _worth_quick_retry(exc: BaseException) -> bool:
    if not isinstance(exc, Exception) or isinstance(exc, ProxyFailed):
        # A cancel (user, shutdown, job timeout) must stop the call, not repeat it; a failed
        # proxy is benched by the runner, which tries the next one.
        return False
    error = classify(exc)
    # A 429/503 that says when to come back goes to the runner, which slows the whole host.
    return error.retryable and error.retry_after_s is None


async def with_quick_retries(call: Callable[[], Awaitable[T]], attempts: int = 2) -> T:
    """Run `call`, retrying a transient failure once or twice at once inside this attempt."""
    async for attempt in AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=_quick_wait,
        retry=retry_if_exception(_worth_quick_retry),
        reraise=True,
    ):
        with attempt:
            return await call()
    raise AssertionError("unreachable")  # pragma: no cover

"""Typed exceptions: every API error carries the API's stable `code`, `message` and `details`.

OutriderError
├── APIError                 the API answered an error ({"error": {code, message, details}})
│   ├── BadRequestError          400 (malformed JSON, bad cursor)
│   ├── AuthenticationError      401 (missing, unknown or revoked key)
│   ├── NotFoundError            404 (missing, or another owner's: the same to you)
│   ├── ConflictError            409 (idempotency_conflict, a job's state)
│   ├── PayloadTooLargeError     413
│   ├── ValidationError          422 (validation_error, unknown_kind, forbidden_header, ...)
│   ├── QuotaExceededError       429 quota_exceeded (`retry_after`: seconds to wait)
│   ├── UnavailableError         503 after the client's retries (Retry-After honoured)
│   └── ServerError              any other 5xx
├── ConnectionFailed         the API could not be reached (code "connection_error")
└── WaitTimeout              wait() gave up before the job ended (code "wait_timeout")
"""

from __future__ import annotations

from typing import Any


class OutriderError(Exception):
    """Base of every error the client raises."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or type(self).code
        self.details = details

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class APIError(OutriderError):
    """An error answer of the API."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None = None,
        details: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, details=details)
        self.status_code = status_code
        self.retry_after = retry_after


class BadRequestError(APIError):
    code = "bad_request"


class AuthenticationError(APIError):
    code = "unauthorized"


class NotFoundError(APIError):
    code = "not_found"


class ConflictError(APIError):
    code = "conflict"


class PayloadTooLargeError(APIError):
    code = "payload_too_large"


class ValidationError(APIError):
    code = "validation_error"


class QuotaExceededError(APIError):
    """The owner is over a quota (jobs queued at once, or per day); not retried by the client:
    `retry_after` says when to try again."""

    code = "quota_exceeded"


class UnavailableError(APIError):
    code = "service_unavailable"


class ServerError(APIError):
    code = "server_error"


class ConnectionFailed(OutriderError):
    code = "connection_error"


class WaitTimeout(OutriderError, TimeoutError):
    """The job had not ended when the wait ran out; `job_id` says which."""

    code = "wait_timeout"

    def __init__(self, message: str, *, job_id: str) -> None:
        super().__init__(message, details={"job_id": job_id})
        self.job_id = job_id


BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: QuotaExceededError,
    503: UnavailableError,
}

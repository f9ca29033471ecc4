"""The error tree: every failure a user can see has a status code and a stable code."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """Base of every error rendered as `{"error": {"code", "message", "details"}}`."""

    status_code: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code

    def body(self) -> dict[str, Any]:
        """The JSON body of this error."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidJson(AppError):
    status_code = 400
    code = "invalid_json"


class InvalidCursor(AppError):
    status_code = 400
    code = "invalid_cursor"


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class NotFound(AppError):
    status_code = 404
    code = "not_found"

    def __init__(self, message: str = "Not found.") -> None:
        super().__init__(message)


class AgentNotFound(NotFound):
    """A job spec names an agent the caller does not have."""

    code = "agent_not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class InvalidState(Conflict):
    code = "invalid_state"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(AppError):
    status_code = 415
    code = "unsupported_media_type"


class ValidationFailed(AppError):
    status_code = 422
    code = "validation_error"


class InvalidUrl(ValidationFailed):
    code = "invalid_url"


class QuotaExceeded(AppError):
    """The owner is over a quota (api/services/quotas.py); answered with `Retry-After`."""

    status_code = 429
    code = "quota_exceeded"

    def __init__(self, message: str, *, retry_after_s: int, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = max(int(retry_after_s), 1)


class ServiceUnavailable(AppError):
    status_code = 503
    code = "service_unavailable"
    retry_after_s = 5


class QueueFull(ServiceUnavailable):
    """Redis is at `maxmemory` and refuses writes (`noeviction`): no job is accepted until it
    has room again (shared/queue.py `JobQueue.has_room`)."""

    code = "queue_full"


class EgressBlocked(Exception):
    """A destination the egress policy refuses; `code` is the job error code."""

    def __init__(self, message: str, code: str = "blocked_destination") -> None:
        super().__init__(message)
        self.code = code

"""Outrider's Python client: `Outrider` (blocking) and `AsyncOutrider` (asyncio)."""

from outrider_client._async import AsyncOutrider
from outrider_client._sync import Outrider
from outrider_client._version import __version__
from outrider_client.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConnectionFailed,
    NotFoundError,
    OutriderError,
    PayloadTooLargeError,
    QuotaExceededError,
    ServerError,
    UnavailableError,
    ValidationError,
    WaitTimeout,
)
from outrider_client.models import Event, Job, JobError

__all__ = [
    "APIError",
    "AsyncOutrider",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ConnectionFailed",
    "Event",
    "Job",
    "JobError",
    "NotFoundError",
    "Outrider",
    "OutriderError",
    "PayloadTooLargeError",
    "QuotaExceededError",
    "ServerError",
    "UnavailableError",
    "ValidationError",
    "WaitTimeout",
    "__version__",
]

"""The one error body of the HTTP API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable error code.")
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    """Every error response has this shape."""

    error: ErrorDetail

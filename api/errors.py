"""One JSON error shape for everything, and the OpenAPI declarations of those errors."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.methods import allow_header, declared
from api.schemas.errors import ErrorBody
from shared.errors import AppError, QuotaExceeded, ServiceUnavailable
from shared.headers import HEADER_ERROR_CODES
from shared.logging import describe, get_logger
from shared.specs import FORMAT_ERROR_CODES, JOB_KINDS, REACH_ERROR_CODES, SPEC_ERROR_CODES

log = get_logger(__name__)

OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    PoolTimeoutError,  # every pooled connection busy for `db_pool_timeout_s`
    RedisConnectionError,
    RedisTimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    # The job store's INSERT runs on asyncpg directly (shared/repositories/job_store_pg.py):
    # a server shutting down, or a connection closed under a statement.
    asyncpg.exceptions.OperatorInterventionError,
    # The server has no room: too many connections, out of memory or disk (class 53).
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.InterfaceError,
    ConnectionError,
    TimeoutError,
    OSError,
)

_DESCRIPTIONS = {
    400: "Malformed request (invalid JSON, bad cursor).",
    401: "Missing or invalid API key.",
    403: "The key's owner may not do this (an operator action).",
    404: "No such object (or it belongs to another owner); for a job spec whose `agent_id` "
    "names no agent of yours, `agent_not_found`.",
    409: "Conflict with the object's state.",
    413: "Request body too large.",
    415: "Body is not JSON.",
    422: "The request is well-formed JSON but invalid.",
    429: "`quota_exceeded`: over the owner's queued or per-day job quota; retry after "
    "`Retry-After` seconds.",
    503: "A backing service is unavailable (`service_unavailable`), or Redis is out of memory "
    "and takes no new jobs (`queue_full`); retry after the Retry-After delay.",
}


# Every route with a JSON body (those that declare 413) takes job specs or agent profiles,
# and so headers.
_BODY_422 = (
    "The body is well-formed JSON but invalid: `validation_error`, or a more specific code: "
    "`unknown_kind` (no such job kind), `forbidden_header` (a header only Outrider may set: "
    "Transfer-Encoding, Content-Length, Connection, Keep-Alive, Upgrade, TE, Trailer, Host, "
    "Expect, Proxy-*), `invalid_header` (a header name that is not a token, or a control "
    "character in a header name or value, the agent's `user_agent` included), or the code of "
    "the check that refused it (e.g. `invalid_url`); for formats `unknown_format`, "
    "`invalid_schema` (a `json` format's schema is not valid JSON Schema), `prompt_too_long` "
    "(over 10,000 characters) and `llm_not_configured` (a `json` format without "
    "OUTRIDER_LLM_BASE_URL); `invalid_session_name`, `invalid_locale` and `invalid_timezone`."
)


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the given error statuses (401 and 503 are always possible);
    a route that takes a body (413) lists the codes of its 422s."""
    statuses = sorted({401, 503, *codes})
    described = {s: _DESCRIPTIONS[s] for s in statuses}
    if 413 in described and 422 in described:
        described[422] = _BODY_422
    out: dict[int | str, dict[str, Any]] = {
        s: {"model": ErrorBody, "description": text} for s, text in described.items()
    }
    for status in (429, 503):
        if status in out:
            out[status]["headers"] = {"Retry-After": _RETRY_AFTER}
    return out


_RETRY_AFTER = {
    "description": "Seconds to wait before trying again.",
    "schema": {"type": "integer", "minimum": 1},
}


def _render(exc: AppError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=headers)


_CUSTOM_CODES = (*HEADER_ERROR_CODES, *FORMAT_ERROR_CODES, *SPEC_ERROR_CODES, *REACH_ERROR_CODES)


def _validation_code(errors: list[dict[str, Any]]) -> str:
    types = {str(err.get("type")) for err in errors}
    if "json_invalid" in types:
        return "invalid_json"
    if "union_tag_invalid" in types or any(_is_kind_filter(err) for err in errors):
        return "unknown_kind"
    # shared/headers.py and shared/specs.py raise pydantic errors whose type is the code.
    return next((code for code in _CUSTOM_CODES if code in types), "validation_error")


def _is_kind_filter(err: dict[str, Any]) -> bool:
    """A `kind` filter (GET /v1/jobs, the events stream, bulk retry) naming no job kind."""
    loc = err.get("loc") or []
    return err.get("type") == "literal_error" and len(loc) >= 2 and loc[1] == "kind"


def _validation_message(code: str, errors: list[dict[str, Any]]) -> str:
    if code == "invalid_json":
        return "The body is not valid JSON."
    if code == "unknown_kind":
        return f"Unknown kind; one of {', '.join(JOB_KINDS)}."
    if code in _CUSTOM_CODES:  # the first refused header, format or crawl value, named
        return next(str(err["msg"]) for err in errors if err.get("type") == code)
    return "The request is invalid."


def _jsonable_errors(errors: Any) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        out.append(
            {
                "loc": [str(part) for part in err.get("loc", ())],
                "msg": str(err.get("msg", ""))[:500],
                "type": str(err.get("type", "")),
            }
        )
    return out[:50]


async def _on_app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    headers = None
    if isinstance(exc, ServiceUnavailable | QuotaExceeded):
        headers = {"Retry-After": str(exc.retry_after_s)}
    return _render(exc, headers)


def _not_allowed(request: Request) -> JSONResponse | None:
    """A 405 (with `Allow`) if the method is not one the path declares, though routing found
    a route for it (`GET /v1/jobs/batch` reaches `GET /v1/jobs/{job_id}`)."""
    found = declared(request.app, request.url.path)
    route = request.scope.get("route")
    if found is None or route is None or getattr(route, "path", None) in found[0]:
        return None
    if request.method in found[1]:
        return None
    body = {
        "error": {"code": "method_not_allowed", "message": "Method Not Allowed", "details": None}
    }
    return JSONResponse(body, status_code=405, headers={"Allow": allow_header(found[1])})


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if (refused := _not_allowed(request)) is not None:
        return refused
    errors = _jsonable_errors(exc.errors())
    code = _validation_code(errors)
    status = 400 if code == "invalid_json" else 422
    message = _validation_message(code, errors)
    body = {"error": {"code": code, "message": message, "details": errors}}
    return JSONResponse(body, status_code=status)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {
        400: "bad_request",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
    }
    code = codes.get(exc.status_code, f"http_{exc.status_code}")
    body = {"error": {"code": code, "message": str(exc.detail), "details": None}}
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405 and (found := declared(request.app, request.url.path)):
        headers["Allow"] = allow_header(found[1])  # every route of the path, not the first's
    return JSONResponse(body, status_code=exc.status_code, headers=headers or None)


async def _on_outage(request: Request, exc: Exception) -> JSONResponse:
    log.warning("api.dependency_unavailable", error=describe(exc, 300), path=request.url.path)
    err = ServiceUnavailable("A backing service (database or Redis) is unavailable. Retry later.")
    return _render(err, {"Retry-After": str(err.retry_after_s)})


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # A driver error SQLAlchemy could not classify (not an integrity or data error) is the
    # connection failing, e.g. "connection was closed in the middle of operation".
    if isinstance(exc, DBAPIError) and (exc.connection_invalidated or type(exc) is DBAPIError):
        return await _on_outage(request, exc)
    log.exception("api.unhandled_error", path=request.url.path)
    body = {"error": {"code": "internal_error", "message": "Internal error.", "details": None}}
    return JSONResponse(body, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers; the order matters only for readability."""
    app.add_exception_handler(AppError, _on_app_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    for exc_type in OUTAGE_ERRORS:
        app.add_exception_handler(exc_type, _on_outage)
    app.add_exception_handler(Exception, _on_unexpected)

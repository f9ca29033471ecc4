"""The `http` job: one call to an external HTTP API, through the egress policy."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from multidict import CIMultiDict

from shared.job_errors import JobErrorCode
from shared.jsonsafe import parse_json
from shared.specs import HttpInput
from worker.bodies import Body, read_capped
from worker.engines.base import EngineContext, check_destination
from worker.identity import accept_language, job_locale
from worker.retry import JobError, status_error, with_quick_retries

MAX_REDIRECTS = 10
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
SENSITIVE_HEADERS = ("authorization", "cookie", "proxy-authorization")


def _headers(ctx: EngineContext, spec: HttpInput) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict(ctx.agent.headers or {})
    if (locale := job_locale(ctx.job, ctx.agent)) is not None:
        headers["Accept-Language"] = accept_language(locale)  # the job's headers may say else
    headers.update(spec.headers)
    if ctx.agent.user_agent:
        headers["User-Agent"] = ctx.agent.user_agent
    if spec.auth is not None:
        value = ctx.secrets.get(spec.auth.secret)
        if value is None:
            raise JobError(
                JobErrorCode.SECRET_NOT_FOUND,
                f"The agent has no secret named {spec.auth.secret!r}.",
                retryable=False,
            )
        if spec.auth.scheme == "bearer":
            headers["Authorization"] = f"Bearer {value}"
        else:
            headers[spec.auth.header] = value
    return headers


def _text(raw: bytes, charset: str | None) -> str:
    try:
        text = raw.decode(charset or "utf-8", errors="replace")
    except (LookupError, ValueError):  # no such charset, or not one for text: UTF-8 then
        text = raw.decode("utf-8", errors="replace")
    return text.replace("\x00", "\ufffd")


def _body_fields(body: Body, content_type: str, charset: str | None) -> dict[str, Any]:
    """`body` (parsed when JSON), `body_bytes`, `body_truncated` and `body_parse_error`."""
    text = _text(body.data, charset)
    fields: dict[str, Any] = {
        "body": text,
        "body_bytes": len(body.data),
        "body_truncated": body.truncated,
        "body_parse_error": None,
    }
    if "json" not in content_type or not body.data:
        return fields
    if body.truncated:  # a cut JSON text may still parse (`12345` cut to `123`): never try
        fields["body_parse_error"] = f"not parsed: the body was cut at {len(body.data)} bytes"
        return fields
    parsed = parse_json(text)
    if parsed.error is not None:
        fields["body_parse_error"] = parsed.error
    else:
        fields["body"] = parsed.value
    return fields


def _follow(method: str, status: int, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    # 303, and 301/302 after a POST, turn into a GET without a body (what browsers do).
    if status == 303 or (status in (301, 302) and method == "POST"):
        return ("HEAD" if method == "HEAD" else "GET"), {}
    return method, body


async def _exchange(ctx: EngineContext, spec: HttpInput, timeout_s: float) -> dict[str, Any]:
    headers = _headers(ctx, spec)
    method: str = spec.method
    url = check_destination(ctx, spec.url)
    body: dict[str, Any] = {}
    if spec.json_body is not None:
        body["json"] = spec.json_body
    elif spec.text is not None:
        body["data"] = spec.text.encode()
    params: dict[str, Any] | None = dict(spec.params) or None
    sensitive: tuple[str, ...] = SENSITIVE_HEADERS
    if spec.auth is not None and spec.auth.scheme == "header":
        sensitive += (spec.auth.header,)  # it carries a secret, whatever its name
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    for _hop in range(MAX_REDIRECTS + 1):
        async with ctx.http.request(
            method,
            url,
            headers=headers,
            params=params,
            allow_redirects=False,
            timeout=timeout,
            **body,
        ) as response:
            location = response.headers.get("Location")
            if response.status in REDIRECT_STATUSES and location:
                next_url = check_destination(ctx, urljoin(str(response.url), location))
                if urlsplit(next_url).netloc != urlsplit(str(response.url)).netloc:
                    for name in sensitive:  # never hand our credentials to another host
                        headers.popall(name, None)
                method, body = _follow(method, response.status, body)
                url, params = next_url, None
                continue
            _check_status(spec, response)
            answer = await read_capped(response, ctx.settings.result_max_bytes)
            return _result(response, answer, started)
    raise JobError(
        JobErrorCode.TOO_MANY_REDIRECTS, f"More than {MAX_REDIRECTS} redirects.", retryable=False
    )


def _check_status(spec: HttpInput, response: aiohttp.ClientResponse) -> None:
    status = response.status
    expected = spec.expected_status
    if not (status in expected if expected else 200 <= status < 300):
        raise status_error(status, response.headers.get("Retry-After"))


def _result(response: aiohttp.ClientResponse, body: Body, started: float) -> dict[str, Any]:
    headers: dict[str, str] = {}
    for name, value in response.headers.items():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return {
        "status": response.status,
        "headers": headers,
        **_body_fields(body, response.content_type or "", response.charset),
        "final_url": str(response.url),
        "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
    }


async def run_http(ctx: EngineContext) -> dict[str, Any]:
    """Run an `http` job. Safe to repeat only if the called API is: the job may run more than
    once when a worker dies mid-call. Transient failures raise a retryable JobError."""
    spec = HttpInput.model_validate(ctx.job.input)
    timeout_s = min(spec.timeout_s or ctx.agent.timeout_s or ctx.job.timeout_s, ctx.job.timeout_s)
    deadline = time.monotonic() + ctx.job.timeout_s

    async def call() -> dict[str, Any]:
        # The job's timeout bounds all calls together: a quick retry gets only what is left.
        # (aiohttp's own timeout can swallow the runner's timeout cancel when both expire at once.)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise JobError(
                JobErrorCode.TIMEOUT,
                f"The job exceeded its {ctx.job.timeout_s:g} s timeout.",
                retryable=True,
            )
        call_s = min(timeout_s, remaining)
        try:
            return await _exchange(ctx, spec, call_s)
        except TimeoutError as exc:  # aiohttp's, for this call (a slow answer, a slow body)
            raise JobError(
                JobErrorCode.TIMEOUT, f"The call took longer than {call_s:.1f} s.", retryable=True
            ) from exc

    result = await with_quick_retries(call)
    ctx.meter.fetched(int(result.get("body_bytes") or 0))
    return result

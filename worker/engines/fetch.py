"""The `fetch` job: GET a page with aiohttp and turn it into LLM-ready formats.

The download stays on the event loop, the parsing goes to the parse pool. Decisions:
- Redirects are followed by hand (at most 10): each hop is checked against the egress policy
  and the agent's domain rules before it is requested; credentials are dropped on a hop to
  another host.
- The body is read to its end (worker/bodies.py) and the download stops as soon as the
  DECOMPRESSED size passes the cap (`fetch_max_bytes`, default 10 MiB): `response_too_large`;
  a body of exactly the cap is whole. Inflating goes in bounded steps, so a gzip bomb costs
  no more memory than the cap; a compressed stream cut short fails (worker/bodies.py).
- The media type is checked before the body is read: HTML, XHTML, XML (`*/xml`, `*+xml`),
  JSON (`*/json`, `*+json`), `text/plain`, PDF and DOCX (read by worker/extract/docfile.py);
  `application/octet-stream` is read and kept only if its first bytes are a PDF or DOCX;
  anything else is `unsupported_content_type`. A response without a Content-Type is sniffed
  (PDF, DOCX, markup, JSON, else text; other binary is refused). An unreadable document is
  `document_unreadable`, one over `document_max_pages` pages `document_too_large`.
- Errors: timeout, connection_error and http_408/425/429/5xx are retryable (Retry-After
  honoured); dns_not_found, tls_error, http_4xx, blocked_destination, response_too_large,
  unsupported_content_type, too_many_redirects and invalid_extract are not.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from multidict import CIMultiDict

from shared.job_errors import JobErrorCode
from shared.settings import Settings
from shared.specs import FetchInput
from worker.bodies import read_capped
from worker.engines.base import DuplicatePage, EngineContext, check_destination
from worker.engines.outputs import finish_formats, parse_formats
from worker.extract.docblocks import DocumentError
from worker.extract.docfile import file_kind, sniff_file
from worker.extract.document import build_from_bytes, document_kind
from worker.extract.pool import parse_off_loop
from worker.extract.schema import SchemaError, compile_schema
from worker.identity import accept_language, job_locale
from worker.retry import JobError, status_error, with_quick_retries

MAX_REDIRECTS = 10
OCTET_STREAM = "application/octet-stream"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
SENSITIVE_HEADERS = ("authorization", "cookie", "proxy-authorization")
ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,application/json;q=0.8,"
    "text/plain;q=0.8,application/pdf;q=0.8,"
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document;q=0.8,*/*;q=0.1"
)


@dataclass(frozen=True)
class Download:
    """A fetched page, before parsing."""

    url: str
    status: int
    content_type: str
    header_charset: str | None
    body: bytes
    fetch_ms: float


def max_bytes(settings: Settings) -> int:
    """The cap on a page's decompressed size (OUTRIDER_FETCH_MAX_BYTES)."""
    return settings.fetch_max_bytes


def _headers(ctx: EngineContext, spec: FetchInput) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict({"Accept": ACCEPT})
    headers.update(ctx.agent.headers or {})
    if (locale := job_locale(ctx.job, ctx.agent)) is not None:
        headers["Accept-Language"] = accept_language(locale)  # the job's headers may say else
    headers.update(spec.headers)
    if ctx.agent.user_agent:
        headers["User-Agent"] = ctx.agent.user_agent
    return headers


def _too_large(cap: int) -> JobError:
    return JobError(
        JobErrorCode.RESPONSE_TOO_LARGE,
        f"The page is larger than {cap} bytes (decompressed).",
        retryable=False,
        details={"max_bytes": cap},
    )


def _unsupported(media: str) -> JobError:
    return JobError(
        JobErrorCode.UNSUPPORTED_CONTENT_TYPE,
        f"Cannot extract from {media or 'an unknown type'}: fetch reads HTML, XML, JSON, text, "
        "PDF and DOCX.",
        retryable=False,
        details={"content_type": media},
    )


async def _read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes:
    declared = response.content_length
    if declared is not None and declared > cap and "Content-Encoding" not in response.headers:
        raise _too_large(cap)
    body = await read_capped(response, cap)
    if body.truncated:
        raise _too_large(cap)  # leaving the response closes the connection
    return body.data


def _readable(declared: str | None) -> bool:
    # A download (octet-stream) may be a PDF or DOCX: its first bytes will say.
    media = (declared or "").split(";")[0].strip().lower()
    return media in ("", OCTET_STREAM) or bool(document_kind(media) or file_kind(media))


def _media_type(declared: str | None, body: bytes) -> str:
    media = (declared or "").split(";")[0].strip().lower()
    if media == OCTET_STREAM:
        sniffed = sniff_file(body)
        if sniffed is None:
            raise _unsupported(media)
        return sniffed
    return declared or _sniff(body)


def _sniff(body: bytes) -> str:
    if (document := sniff_file(body)) is not None:
        return document
    head = body[:1024].lstrip(b"\xef\xbb\xbf \t\r\n")
    if b"\x00" in head:
        raise _unsupported("application/octet-stream")
    if head.startswith(b"<"):
        return "text/html"
    return "application/json" if head[:1] in (b"{", b"[") else "text/plain"


def _next_hop(
    ctx: EngineContext, response: aiohttp.ClientResponse, headers: CIMultiDict[str]
) -> str | None:
    location = response.headers.get("Location")
    if response.status not in REDIRECT_STATUSES or not location:
        return None
    current = str(response.url)
    next_url = check_destination(ctx, urljoin(current, location))
    if urlsplit(next_url).netloc != urlsplit(current).netloc:
        for name in SENSITIVE_HEADERS:  # never hand credentials to another host
            headers.popall(name, None)
    return next_url


async def _download(ctx: EngineContext, spec: FetchInput, timeout_s: float) -> Download:
    headers = _headers(ctx, spec)
    url = check_destination(ctx, spec.url)
    cap = max_bytes(ctx.settings)
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    for _hop in range(MAX_REDIRECTS + 1):
        async with ctx.http.get(
            url, headers=headers, allow_redirects=False, timeout=timeout
        ) as response:
            if (next_url := _next_hop(ctx, response, headers)) is not None:
                if ctx.claim_redirect is not None and not await ctx.claim_redirect(next_url):
                    raise DuplicatePage(next_url, response.status)
                url = next_url
                continue
            if not 200 <= response.status < 300:
                raise status_error(response.status, response.headers.get("Retry-After"))
            declared = response.headers.get("Content-Type")
            if not _readable(declared):
                raise _unsupported(response.content_type)
            body = await _read_capped(response, cap)
            return Download(
                url=str(response.url),
                status=response.status,
                content_type=_media_type(declared, body),
                header_charset=response.charset,
                body=body,
                fetch_ms=round((time.monotonic() - started) * 1000, 1),
            )
    raise JobError(
        JobErrorCode.TOO_MANY_REDIRECTS, f"More than {MAX_REDIRECTS} redirects.", retryable=False
    )


async def _download_in_time(ctx: EngineContext, spec: FetchInput, timeout_s: float) -> Download:
    try:
        async with asyncio.timeout(timeout_s):
            return await _download(ctx, spec, timeout_s)
    except TimeoutError as exc:
        if isinstance(exc, JobError):  # pragma: no cover - JobError is not a TimeoutError
            raise
        raise JobError(
            JobErrorCode.TIMEOUT, f"The page took longer than {timeout_s:g} s.", retryable=True
        ) from exc


def _schema(spec: FetchInput) -> dict[str, Any] | None:
    if spec.extract is None:
        return None
    schema = {
        name: rule if isinstance(rule, str) else rule.model_dump()
        for name, rule in spec.extract.items()
    }
    try:
        compile_schema(schema)  # a bad selector fails now, before any request
    except SchemaError as exc:
        raise JobError(JobErrorCode.INVALID_EXTRACT, str(exc), retryable=False) from None
    return schema


async def run_fetch(ctx: EngineContext) -> dict[str, Any]:
    """Run a `fetch` job: GET the page, then extract the requested formats off the loop.

    Idempotent (a GET, nothing stored elsewhere); a worker that dies mid-job just fetches again.
    Transient failures raise a retryable JobError (one quick retry inside the attempt first).
    """
    spec = FetchInput.model_validate(ctx.job.input)
    return await finish_formats(ctx, spec, await fetch_spec(ctx, spec))


async def fetch_spec(ctx: EngineContext, spec: FetchInput) -> dict[str, Any]:
    """Fetch and extract `spec` (a fetch input, or a scrape input's first try)."""
    schema = _schema(spec)
    timeout_s = min(spec.timeout_s or ctx.agent.timeout_s or ctx.job.timeout_s, ctx.job.timeout_s)
    try:
        page = await with_quick_retries(lambda: _download_in_time(ctx, spec, timeout_s))
    except DuplicatePage as duplicate:
        # A crawl's page whose redirect lands on a page the crawl has: nothing more to fetch.
        metadata = {"final_url": duplicate.url, "status_code": duplicate.status}
        return {"duplicate_of": duplicate.url, "metadata": metadata}
    ctx.meter.fetched(len(page.body))
    metadata = {
        "final_url": page.url,
        "status_code": page.status,
        "content_type": page.content_type,
        "bytes": len(page.body),
        "timings_ms": {"fetch": page.fetch_ms},
    }
    try:
        return await parse_off_loop(
            None,
            build_from_bytes,
            page.body,
            header_charset=page.header_charset,
            url=page.url,
            formats=parse_formats(spec),
            extract=schema,
            metadata=metadata,
            markdown_links=spec.markdown_links,
            max_pages=ctx.settings.document_max_pages,
        )
    except SchemaError as exc:
        raise JobError(JobErrorCode.INVALID_EXTRACT, str(exc), retryable=False) from None
    except DocumentError as exc:
        raise document_error(exc, ctx.settings.document_max_pages) from None


def document_error(exc: DocumentError, max_pages: int) -> JobError:
    """The job error for an unreadable or oversized document (never retried)."""
    if exc.reason == "too_many_pages":
        details = {"pages": exc.pages, "max_pages": max_pages}
        return JobError(
            JobErrorCode.DOCUMENT_TOO_LARGE, exc.message, retryable=False, details=details
        )
    return JobError(
        JobErrorCode.DOCUMENT_UNREADABLE,
        exc.message,
        retryable=False,
        details={"reason": exc.reason},
    )

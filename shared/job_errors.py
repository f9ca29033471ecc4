"""Every code a job can end with (`job.error.code`): what it means and whether it is retried.

The catalogue is the map of what can go wrong, after httpx's `_exceptions.py`: engines raise
`worker.retry.JobError` with a `JobErrorCode` (or an `http_*` status code), and docs/errors.md
is generated from this module (`python -m shared.job_errors`; a test keeps it in step).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from enum import StrEnum


class JobErrorCode(StrEnum):
    """A stable job error code. The HTTP status family (`http_4xx`, `http_503`, ...) is
    separate: see `http_status_code`."""

    # The network and the destination
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    CONTENT_DECODING_FAILED = "content_decoding_failed"
    DNS_NOT_FOUND = "dns_not_found"
    TLS_ERROR = "tls_error"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    RESPONSE_TOO_LARGE = "response_too_large"
    UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
    # Policy: what Outrider or the agent refuses
    BLOCKED_DESTINATION = "blocked_destination"
    INVALID_URL = "invalid_url"
    INVALID_REQUEST = "invalid_request"
    DOMAIN_NOT_ALLOWED = "domain_not_allowed"
    FORBIDDEN_HEADER = "forbidden_header"
    INVALID_HEADER = "invalid_header"
    SECRET_NOT_FOUND = "secret_not_found"  # noqa: S105 - a code, not a secret
    ROBOTS_DISALLOWED = "robots_disallowed"
    ROBOTS_UNAVAILABLE = "robots_unavailable"
    POLITENESS_UNAVAILABLE = "politeness_unavailable"
    SESSION_TOO_LARGE = "session_too_large"
    PROXY_UNAVAILABLE = "proxy_unavailable"
    # Extraction and the browser
    INVALID_EXTRACT = "invalid_extract"
    PARSE_FAILED = "parse_failed"
    DOCUMENT_UNREADABLE = "document_unreadable"
    DOCUMENT_TOO_LARGE = "document_too_large"
    EXTRACTION_INVALID = "extraction_invalid"
    LLM_ERROR = "llm_error"
    EMPTY_PAGE = "empty_page"
    ACTION_FAILED = "action_failed"
    ARTIFACT_TOO_LARGE = "artifact_too_large"
    PAGE_TOO_LARGE = "page_too_large"
    BROWSER_CRASHED = "browser_crashed"
    BROWSER_ERROR = "browser_error"
    BROWSER_UNAVAILABLE = "browser_unavailable"
    # The system
    WORKER_LOST = "worker_lost"
    KIND_NOT_SUPPORTED = "kind_not_supported"
    CANCELLED = "cancelled"
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True)
class CodeInfo:
    """What a code means, and whether a job that fails with it is tried again."""

    meaning: str
    retryable: bool


C = JobErrorCode
CATALOGUE: dict[JobErrorCode, CodeInfo] = {
    C.TIMEOUT: CodeInfo("The job, a call or a page operation ran out of time.", True),
    C.CONNECTION_ERROR: CodeInfo(
        "The connection failed (or no proxy of the agent could reach the target), was reset, "
        "or a body ended early (short of its Content-Length, or a broken chunk).",
        True,
    ),
    C.CONTENT_DECODING_FAILED: CodeInfo(
        "The body's Content-Encoding (gzip, deflate, br) could not be decoded: the server "
        "sent a broken compressed stream, or one cut short (retried only when the body was "
        "close-delimited: its end was the connection's).",
        False,
    ),
    C.DNS_NOT_FOUND: CodeInfo("The host name does not resolve.", False),
    C.TLS_ERROR: CodeInfo("The TLS handshake or the certificate failed.", False),
    C.TOO_MANY_REDIRECTS: CodeInfo("More than 10 redirects.", False),
    C.RESPONSE_TOO_LARGE: CodeInfo(
        "A page is larger than `OUTRIDER_FETCH_MAX_BYTES`, decompressed.", False
    ),
    C.UNSUPPORTED_CONTENT_TYPE: CodeInfo(
        "The response is not a type the job can read (or the URL is a download).", False
    ),
    C.BLOCKED_DESTINATION: CodeInfo(
        "The egress policy refuses the destination (an internal address, a forbidden port "
        "or scheme), on the first request, a redirect or a page's navigation.",
        False,
    ),
    C.INVALID_URL: CodeInfo("The URL cannot be used (malformed, or not http(s)).", False),
    C.INVALID_REQUEST: CodeInfo(
        "The browser sent a request the egress proxy could not judge (a head over 64 KiB).",
        False,
    ),
    C.DOMAIN_NOT_ALLOWED: CodeInfo("The agent's allowed/blocked domains forbid the host.", False),
    C.FORBIDDEN_HEADER: CodeInfo(
        "A stored header sets framing (Transfer-Encoding, Content-Length, Host, ...).", False
    ),
    C.INVALID_HEADER: CodeInfo(
        "A stored header name or value holds control characters (CR, LF, NUL...).", False
    ),
    C.SECRET_NOT_FOUND: CodeInfo("The job names a secret its agent does not have.", False),
    C.ROBOTS_DISALLOWED: CodeInfo("robots.txt disallows the URL for the agent.", False),
    C.ROBOTS_UNAVAILABLE: CodeInfo(
        "robots.txt could not be fetched (5xx, 429, unreachable): nothing is fetched.", True
    ),
    C.POLITENESS_UNAVAILABLE: CodeInfo("The per-host limits in Redis could not be reached.", True),
    C.SESSION_TOO_LARGE: CodeInfo(
        "The job's `session` grew larger than `OUTRIDER_SESSION_MAX_BYTES`: it was not saved.",
        False,
    ),
    C.PROXY_UNAVAILABLE: CodeInfo(
        "Every proxy of the agent is benched: each failed (could not be reached, refused the "
        "credentials with 407, or answered CONNECT with a 5xx for a target another proxy "
        "reached) within `OUTRIDER_PROXY_BENCH_S`.",
        True,
    ),
    C.INVALID_EXTRACT: CodeInfo("An `extract` rule is unusable (a bad selector).", False),
    C.PARSE_FAILED: CodeInfo("The page could not be parsed (the parser process died).", True),
    C.DOCUMENT_UNREADABLE: CodeInfo(
        "A PDF or DOCX cannot be read; `details.reason` says why: `encrypted` (a password), "
        "`corrupt`, `image_only` (a scan without a text layer: no OCR is done) or `empty`.",
        False,
    ),
    C.DOCUMENT_TOO_LARGE: CodeInfo(
        "A PDF has more pages than `OUTRIDER_DOCUMENT_MAX_PAGES`.", False
    ),
    C.EXTRACTION_INVALID: CodeInfo(
        "The language model's answer did not fit the `json` format's schema, twice (the "
        "second time it was shown the validation error).",
        False,
    ),
    C.LLM_ERROR: CodeInfo(
        "The language model's endpoint failed: unreachable, a 5xx or 429, or an answer that "
        "is not a chat completion.",
        True,
    ),
    C.EMPTY_PAGE: CodeInfo(
        "A rendered page still showed nothing after settling: no text (a noscript message "
        "does not count), no image or other media.",
        True,
    ),
    C.ACTION_FAILED: CodeInfo("A render action could not be done (e.g. a bad selector).", False),
    C.ARTIFACT_TOO_LARGE: CodeInfo(
        "A screenshot is larger than `OUTRIDER_ARTIFACT_MAX_BYTES`.", False
    ),
    C.PAGE_TOO_LARGE: CodeInfo(
        "A page used more memory than `OUTRIDER_BROWSER_PAGE_MAX_MB`, or was the largest when "
        "its browser passed `OUTRIDER_BROWSER_MAX_RSS_MB`, and was stopped.",
        False,
    ),
    C.BROWSER_CRASHED: CodeInfo("Chromium crashed under the job.", True),
    C.BROWSER_ERROR: CodeInfo("The page or the browser driver failed.", True),
    C.BROWSER_UNAVAILABLE: CodeInfo("Chromium would not start.", True),
    C.WORKER_LOST: CodeInfo(
        "The worker running the job stopped answering (its lease ran out).", True
    ),
    C.KIND_NOT_SUPPORTED: CodeInfo("No engine for this job kind on this worker.", False),
    C.CANCELLED: CodeInfo("Cancelled by the user while it ran (an attempt's code).", False),
    C.INTERNAL_ERROR: CodeInfo("A bug: the job's attempt raised something unexpected.", True),
}

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 507, 509, 520, 521, 522, 524})
_HTTP_CODE = re.compile(r"http_(?:[1-5]xx|[1-5][0-9][0-9])")


def is_retryable_status(status: int) -> bool:
    """408, 425, 429 and most 5xx are transient; every other status is an answer."""
    return status in RETRYABLE_STATUSES or (500 <= status <= 599 and status != 501)


def http_status_code(status: int) -> str:
    """The code of an HTTP status a job did not expect: `http_<status>` when it is retried
    (408, 425, 429, 5xx but 501), else its class (`http_4xx`, `http_3xx`)."""
    return f"http_{status}" if is_retryable_status(status) else f"http_{status // 100}xx"


def is_known(code: str) -> bool:
    """Whether `code` is in the catalogue or the HTTP status family."""
    return code in CATALOGUE or _HTTP_CODE.fullmatch(code) is not None


def markdown() -> str:
    """The catalogue as the Markdown page docs/errors.md."""
    lines = [
        "# Job error codes",
        "",
        "Generated from `shared/job_errors.py` (`python -m shared.job_errors > docs/errors.md`).",
        "A failed job's `error` is `{code, message, retryable, details?}`; an attempt's",
        "`error_code` uses the same codes. Retried codes send the job round again with",
        "exponential backoff (never sooner than a `Retry-After`) until `max_attempts`.",
        "",
        "| code | retried | meaning |",
        "|---|---|---|",
    ]
    for code, info in CATALOGUE.items():
        lines.append(f"| `{code}` | {'yes' if info.retryable else 'no'} | {info.meaning} |")
    lines += [
        "| `http_<status>` | yes | 408, 425, 429 or a 5xx other than 501: the server's answer "
        "was not the one expected (`Retry-After` is honoured). |",
        "| `http_4xx`, `http_3xx` | no | Any other status the job did not expect (an `http` "
        "job's `expected_status`, else 2xx). |",
        "",
        "## The API's own codes",
        "",
        'A refused request answers `{"error": {code, message, details}}`; the codes that are',
        "not a job's (see docs/api.md for each route's):",
        "",
        "| status | code | meaning |",
        "|---|---|---|",
        *(f"| {status} | `{code}` | {meaning} |" for status, code, meaning in API_CODES),
        "",
    ]
    return "\n".join(lines)


API_CODES = (
    (400, "invalid_json", "The body is not JSON."),
    (400, "invalid_cursor", "A `cursor` that no list gave out."),
    (401, "unauthorized", "No API key, or one that is unknown or revoked."),
    (
        403,
        "forbidden",
        "An operator's action (queue pause) by an owner not in OUTRIDER_ADMIN_OWNERS.",
    ),
    (404, "not_found", "No such object, or another owner's: the same answer."),
    (404, "agent_not_found", "A job spec's `agent_id` names no agent of the caller's."),
    (405, "method_not_allowed", "A method the path does not declare; `Allow` lists those it does."),
    (409, "idempotency_conflict", "An `Idempotency-Key` used before with another body."),
    (413, "payload_too_large", "The body is over OUTRIDER_MAX_REQUEST_BYTES."),
    (422, "validation_error", "The request does not fit the schema (`details` say where)."),
    (422, "unknown_kind", "No such job kind: in a spec, or a `kind` filter."),
    (
        429,
        "quota_exceeded",
        "Over the owner's OUTRIDER_OWNER_MAX_QUEUED or OUTRIDER_OWNER_MAX_JOBS_PER_DAY; "
        "`Retry-After` says when to try again.",
    ),
    (503, "service_unavailable", "PostgreSQL or Redis is away; `Retry-After` says when to retry."),
)


if __name__ == "__main__":
    sys.stdout.write(markdown())

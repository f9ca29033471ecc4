"""Where a render's page went, and what it was refused: the main frame's navigations (the first
one, its redirects, and any the page starts later: meta refresh, `location = ...`), judged as
the job's answer, and the subresources the egress policy refused (`blocked_requests`).

The page a job returns is the main frame's last document. If the egress proxy answered it (a
marked response: the policy refused the URL) or its navigation failed (a refused tunnel, a
redirect to `file:` or `data:`), the job fails with that code and the URL in the error, never
with the proxy's refusal as the page.
"""

from __future__ import annotations

import contextlib
from urllib.parse import urljoin, urlsplit

from playwright.async_api import BrowserContext, Page, Request, Response
from playwright.async_api import Error as PlaywrightError

from shared.job_errors import JobErrorCode
from worker.browser_egress import MARKER_HEADER, EgressProxy
from worker.refusal import POLICY_CODES
from worker.retry import JobError, status_error

# net::ERR_* prefixes of a failed navigation -> (code, retryable); others are connection errors.
NET_ERRORS = (
    (("ERR_NAME_NOT_RESOLVED", "ERR_NAME_RESOLUTION_FAILED"), "dns_not_found", False),
    (("ERR_CERT_", "ERR_SSL_", "ERR_BAD_SSL_"), "tls_error", False),
    (
        # Chromium's refusals: a policy's (ours, from a context route), a port it never
        # connects to, a redirect to a scheme a page may not go to (file:, data:, ...).
        ("ERR_BLOCKED_BY_CLIENT", "ERR_UNSAFE_PORT", "ERR_UNSAFE_REDIRECT",
         "ERR_UNKNOWN_URL_SCHEME", "ERR_DISALLOWED_URL_SCHEME", "ERR_ACCESS_DENIED"),
        "blocked_destination",
        False,
    ),
    (("ERR_INVALID_URL", "ERR_INVALID_REDIRECT"), "invalid_url", False),
    (("ERR_TOO_MANY_REDIRECTS",), "too_many_redirects", False),
    (("ERR_TIMED_OUT", "ERR_CONNECTION_TIMED_OUT"), "timeout", True),
)  # fmt: skip


def first_line(exc: BaseException | str) -> str:
    """The first line of an error's message, at most 300 characters."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def navigation_error(exc: PlaywrightError | str, proxy: EgressProxy, urls: list[str]) -> JobError:
    """The job error for a failed navigation (`urls`: the hops tried, newest last)."""
    message = first_line(exc)
    details = {"url": urls[-1]} if urls else None
    if "ERR_TUNNEL_CONNECTION_FAILED" in message:
        for url in reversed(urls):
            refusal = proxy.refusal_for(url)
            if refusal is not None:
                retryable = refusal.code == "connection_error"
                text = f"{refusal.message} ({url})"
                return JobError(refusal.code, text, retryable=retryable, details={"url": url})
    for markers, code, retryable in NET_ERRORS:
        if any(marker in message for marker in markers):
            return JobError(code, message, retryable=retryable, details=details)
    if "net::ERR_" in message:
        return JobError(JobErrorCode.CONNECTION_ERROR, message, retryable=True, details=details)
    if "Download is starting" in message:  # not a page: a file the browser would save
        return JobError(JobErrorCode.UNSUPPORTED_CONTENT_TYPE, message, retryable=False)
    return JobError(JobErrorCode.BROWSER_ERROR, message, retryable=True)


def check_response(response: Response | None, proxy: EgressProxy) -> int:
    """The status of a main-frame document, or the job error it stands for: a refusal of the
    egress proxy (its marked answer) or a status the job should not return."""
    if response is None:  # same-document navigation: nothing to judge
        return 200
    code = proxy.marked_code(response.headers.get(MARKER_HEADER.lower()))
    if code is not None:  # the egress proxy answered, not the site
        refusal = proxy.refusal_for(response.url)
        reason = f": {refusal.message}" if refusal is not None else ""
        message = f"The egress proxy refused {response.url}{reason}"
        details = {"url": response.url}
        raise JobError(code, message, retryable=code == "connection_error", details=details)
    status = response.status
    if status >= 400:
        raise status_error(status, response.headers.get("retry-after"))
    return status


def _main_frame_navigation(page: Page, request: Request) -> bool:
    with contextlib.suppress(PlaywrightError):  # a service worker's request has no frame
        return request.is_navigation_request() and request.frame == page.main_frame
    return False


class MainFrame:
    """The main frame's navigations: every hop tried, and its last document (the response,
    or the failure that put an error page there)."""

    def __init__(self, page: Page, proxy: EgressProxy, url: str) -> None:
        self.page = page
        self.proxy = proxy
        self.hops = [url]
        self.response: Response | None = None
        self.failure: str | None = None
        # On the context, as Refusals and Traffic are: each kind of event a page or a context
        # listens to costs a message to Playwright's driver per job.
        page.context.on("request", self._request)
        page.context.on("response", self._response)
        page.context.on("requestfailed", self._failed)

    def _request(self, request: Request) -> None:
        if _main_frame_navigation(self.page, request):
            self.hops.append(request.url)

    def _response(self, response: Response) -> None:
        if _main_frame_navigation(self.page, response.request):
            self.response, self.failure = response, None

    def _failed(self, request: Request) -> None:
        failure = request.failure or ""
        # ERR_ABORTED: replaced by another navigation, a 204, a download: the page stays.
        if _main_frame_navigation(self.page, request) and "ERR_ABORTED" not in failure:
            self.failure = f"{failure} at {request.url}"

    def failed(self, exc: PlaywrightError | str) -> JobError:
        """The job error for a navigation that failed with `exc`."""
        return self._left_the_web(first_line(exc)) or navigation_error(exc, self.proxy, self.hops)

    def _left_the_web(self, message: str) -> JobError | None:
        """A redirect to a scheme other than http(s). Chromium refuses some (`file:`, `data:`:
        ERR_UNSAFE_REDIRECT) and cancels others (`ftp:`, `mailto:`, `javascript:`:
        ERR_ABORTED, `javascript:` without even reporting the redirect); either way the page
        went where it may not, and trying again would not change that."""
        hop, response = self.hops[-1], self.response
        if response is not None and 300 <= response.status < 400:
            hop = urljoin(response.url, response.headers.get("location", ""))
        elif "ERR_ABORTED" in message and (response is None or response.url != hop):
            return JobError(  # nothing answered, yet it was cancelled: a redirect not followed
                "blocked_destination",
                f"{hop[:300]} redirected the page to a URL the browser does not load "
                "(javascript:, mailto: and the like): only http(s) pages are rendered.",
                retryable=False,
                details={"url": hop[:2048]},
            )
        if urlsplit(hop).scheme.lower() in ("http", "https"):
            return None
        return JobError(
            JobErrorCode.BLOCKED_DESTINATION,
            f"The page was sent to {hop[:300]!r}: only http(s) pages are rendered.",
            retryable=False,
            details={"url": hop[:2048]},
        )

    def judge(self) -> int:
        """The status of the document the page ends on; raises the job error when that is a
        refusal, a failed navigation or an error status."""
        if self.failure is not None:
            raise self.failed(self.failure)
        return check_response(self.response, self.proxy)


class Refusals:
    """The page's requests the egress policy refused: in the context route (when the job has
    one), or by the egress proxy, seen as its marked answers and as failed tunnels to a host:port
    it refused."""

    def __init__(self, proxy: EgressProxy) -> None:
        self.proxy = proxy
        self.urls: list[str] = []

    def watch(self, context: BrowserContext) -> None:
        context.on("response", self._answered)
        context.on("requestfailed", self._failed)

    def _answered(self, response: Response) -> None:
        code = self.proxy.marked_code(response.headers.get(MARKER_HEADER.lower()))
        if code in POLICY_CODES:
            self.urls.append(response.url)

    def _failed(self, request: Request) -> None:
        if "ERR_TUNNEL_CONNECTION_FAILED" in (request.failure or ""):
            refusal = self.proxy.refusal_for(request.url)
            if refusal is not None and refusal.code in POLICY_CODES:
                self.urls.append(request.url)

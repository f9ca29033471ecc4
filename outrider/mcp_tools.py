"""The MCP tools: what an agent's model sees of Outrider (scrape, call_api, crawl, crawl_status,
map, get_job, list_jobs, cancel_job), each a call through the client with the caller's key.

Both transports share them (outrider/mcp_server.py): over stdio the client talks HTTP to the API
with OUTRIDER_API_KEY; over /mcp it talks to the same API in-process with the request's own
Bearer key. Either way every tool sees exactly what that key sees (another owner's job is
`not_found`). Errors come back as tool errors that start with the API's stable code. Results
are text, cut at `max_chars` with a marker that says how to fetch the rest.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from outrider_client import AsyncOutrider, Job, OutriderError
from shared import __version__

T = TypeVar("T")
Connect = Callable[[Context], AbstractAsyncContextManager[AsyncOutrider]]
FormatName = Literal["markdown", "text", "html", "raw_html", "links", "metadata"]
MAX_CHARS = 20_000
PAGE_FORMATS = ("markdown", "text", "html", "raw_html", "links", "metadata", "extract")
INSTRUCTIONS = (
    "Outrider runs web jobs: read pages as Markdown (scrape), call HTTP APIs with an agent's "
    "stored secrets (call_api), crawl or map sites. Jobs are queued; a tool waits for the "
    "answer up to `wait_s` seconds, else gives a job id to check later with get_job."
)

Url = Annotated[str, Field(description="An absolute http(s) URL.")]
JobIdArg = Annotated[str, Field(description="A job id, as returned by another tool.")]
WaitS = Annotated[
    float, Field(ge=0, le=300, description="Seconds to wait for the answer before returning.")
]
MaxChars = Annotated[
    int, Field(ge=500, le=200_000, description="Cut the answer at this many characters.")
]
Cursor = Annotated[str | None, Field(description="`next_cursor` of a previous page.")]
Offset = Annotated[int, Field(ge=0, description="Start at this character of the content.")]


def tool_error(exc: OutriderError) -> ToolError:
    """The API's error as a tool error, its stable code first."""
    details = f" ({json.dumps(exc.details)[:500]})" if exc.details else ""
    return ToolError(f"{exc.code}: {exc.message}{details}")


def cut(text: str, job_id: str, offset: int = 0, max_chars: int = MAX_CHARS) -> str:
    """`text` from `offset`, at most `max_chars`, with a marker saying how to get the rest."""
    part = text[offset : offset + max_chars]
    end = offset + len(part)
    if end >= len(text):
        return part
    return (
        f"{part}\n\n[... cut at character {end} of {len(text)}. The rest: "
        f'get_job(job_id="{job_id}", offset={end})]'
    )


def content_of(job: Job) -> str:
    """A finished job's result as text: a page's one textual format as it is (Markdown, text,
    HTML), anything else (several formats, an API's answer) as JSON."""
    result = job.result or {}
    formats = [name for name in PAGE_FORMATS if name in result]
    if len(formats) == 1 and isinstance(result[formats[0]], str):
        return str(result[formats[0]])
    return json.dumps(result, indent=1, ensure_ascii=False)


def describe(job: Job, offset: int = 0, max_chars: int = MAX_CHARS) -> str:
    """A job for a model: its state, then its content (or error, or how to wait for it)."""
    head = f"job {job.id} ({job.kind}): {job.status}"
    if job.error is not None:
        return f"{head}\nerror {job.error.code}: {job.error.message}"
    if not job.ended:
        notes = "".join(f"\n{warning.code}: {warning.message}" for warning in job.warnings)
        return f'{head}{notes}\nNot finished yet: call get_job(job_id="{job.id}") later.'
    return f"{head}\n\n{cut(content_of(job), str(job.id), offset, max_chars)}"


TOOL_NAMES = (
    "scrape",
    "call_api",
    "crawl",
    "crawl_status",
    "map",
    "get_job",
    "list_jobs",
    "cancel_job",
)


def build_server(connect: Connect) -> MCPServer:
    """The MCP server with every tool; `connect` gives each call a client with the caller's
    key."""
    server = MCPServer(
        name="outrider", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
    )
    tools = Tools(connect)
    for name in TOOL_NAMES:
        server.add_tool(getattr(tools, name), name=name, structured_output=False)
    return server


class Tools:
    """The tools; each method's signature is its JSON Schema, its docstring its description."""

    def __init__(self, connect: Connect) -> None:
        self.connect = connect

    async def _use(self, ctx: Context, action: Callable[[AsyncOutrider], Awaitable[T]]) -> T:
        try:
            async with self.connect(ctx) as client:
                return await action(client)
        except OutriderError as exc:
            raise tool_error(exc) from exc

    async def _run(self, ctx: Context, spec: dict[str, Any], wait_s: float) -> Job:
        return await self._use(ctx, lambda client: client.submit(spec, wait=wait_s))

    async def scrape(
        self,
        ctx: Context,
        url: Url,
        formats: Annotated[list[FormatName], Field(min_length=1)] = ["markdown"],  # noqa: B006
        render: Annotated[
            Literal["auto", "http", "browser"],
            Field(description="auto: load the page in a browser only if it needs one."),
        ] = "auto",
        wait_s: WaitS = 60,
        max_chars: MaxChars = MAX_CHARS,
    ) -> str:
        """Read a web page and return its content (Markdown by default; also text, html,
        links or metadata). Use this to read any public page."""
        spec = {"kind": "scrape", "input": {"url": url, "formats": formats, "render": render}}
        return describe(await self._run(ctx, spec, wait_s), 0, max_chars)

    async def call_api(
        self,
        ctx: Context,
        url: Url,
        method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET",
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        json_body: Annotated[Any, Field(description="A JSON body to send.")] = None,
        agent_id: Annotated[
            str | None, Field(description="Run under this agent (its headers, limits, secrets).")
        ] = None,
        secret: Annotated[
            str | None,
            Field(description="The name of the agent's secret to authenticate with (Bearer)."),
        ] = None,
        secret_header: Annotated[
            str | None, Field(description="Send the secret in this header instead of Bearer.")
        ] = None,
        wait_s: WaitS = 60,
        max_chars: MaxChars = MAX_CHARS,
    ) -> str:
        """Call an HTTP API and return its status, headers and body. Secrets are never shown
        to you: name one of the agent's secrets in `secret` and Outrider sends it."""
        call: dict[str, Any] = {"url": url, "method": method}
        call.update({k: v for k, v in (("headers", headers), ("params", params)) if v})
        if json_body is not None:
            call["json"] = json_body
        if secret:
            call["auth"] = {"secret": secret}
            if secret_header:
                call["auth"].update(scheme="header", header=secret_header)
        spec: dict[str, Any] = {"kind": "http", "input": call}
        if agent_id:
            spec["agent_id"] = agent_id
        return describe(await self._run(ctx, spec, wait_s), 0, max_chars)

    async def crawl(
        self,
        ctx: Context,
        url: Url,
        max_depth: Annotated[int, Field(ge=0, description="0: the start page only.")] = 2,
        limit: Annotated[int, Field(ge=1, description="Pages at most.")] = 100,
        formats: Annotated[list[FormatName], Field(min_length=1)] = ["markdown"],  # noqa: B006
    ) -> str:
        """Start crawling a site from `url` (each page becomes a job of its own). Returns the
        crawl's job id at once: follow it with crawl_status."""
        crawl = {"url": url, "max_depth": max_depth, "limit": limit, "page": {"formats": formats}}
        spec = {"kind": "crawl", "input": crawl}
        job = await self._run(ctx, spec, 0)
        return f'crawl started: job {job.id} ({job.status}); crawl_status(job_id="{job.id}")'

    async def crawl_status(
        self,
        ctx: Context,
        job_id: JobIdArg,
        cursor: Annotated[
            str | None, Field(description="`next_cursor` of a previous page.")
        ] = None,
        max_chars: MaxChars = MAX_CHARS,
    ) -> str:
        """A crawl's progress and its pages so far (URL, status, page job id; read a page's
        content with get_job)."""

        async def status(client: AsyncOutrider) -> str:
            job = await client.get_job(job_id)
            params = {"cursor": cursor} if cursor else {}
            pages = await client.get_json(f"/v1/jobs/{job_id}/pages", params)
            head = f"crawl {job.id}: {job.status}\nprogress: {json.dumps(job.result or {})}"
            return f"{head}\n\npages: {json.dumps(pages, indent=1)}"

        return cut(await self._use(ctx, status), job_id, 0, max_chars)

    async def map(
        self,
        ctx: Context,
        url: Url,
        search: Annotated[str | None, Field(description="URLs containing it come first.")] = None,
        limit: Annotated[int, Field(ge=1, description="URLs at most.")] = 500,
        wait_s: WaitS = 60,
        max_chars: MaxChars = MAX_CHARS,
    ) -> str:
        """List a site's URLs (from its sitemaps and links) without reading the pages."""
        spec: dict[str, Any] = {"kind": "map", "input": {"url": url, "limit": limit}}
        if search:
            spec["input"]["search"] = search
        return describe(await self._run(ctx, spec, wait_s), 0, max_chars)

    async def get_job(
        self, ctx: Context, job_id: JobIdArg, offset: Offset = 0, max_chars: MaxChars = MAX_CHARS
    ) -> str:
        """A job's status and result (or error). For a long result, pass `offset` to read on
        from where the previous answer was cut."""
        job = await self._use(ctx, lambda client: client.get_job(job_id))
        return describe(job, offset, max_chars)

    async def list_jobs(
        self,
        ctx: Context,
        status: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None,
        kind: str | None = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
        cursor: Annotated[
            str | None, Field(description="`next_cursor` of a previous page.")
        ] = None,
    ) -> str:
        """Your jobs, newest first: id, kind, status, URL and error code."""
        page = await self._use(
            ctx, lambda c: c.list_jobs(status=status, kind=kind, limit=limit, cursor=cursor)
        )
        lines = [
            f"{job.id} {job.kind} {job.status} {job.input.get('url', '')}"
            + (f" {job.error.code}" if job.error else "")
            for job in page.items
        ]
        more = f"\nnext_cursor: {page.next_cursor}" if page.next_cursor else ""
        return ("\n".join(lines) or "No jobs.") + more

    async def cancel_job(self, ctx: Context, job_id: JobIdArg) -> str:
        """Cancel a queued or running job."""
        job = await self._use(ctx, lambda client: client.cancel(job_id))
        return f"job {job.id}: {job.status}"

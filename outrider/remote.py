"""CLI commands that talk to a running API through the client: scrape, submit, watch, usage.

They take `--url` and `--key` (or OUTRIDER_URL and OUTRIDER_API_KEY). Exit codes: 0 the job
succeeded, 1 it failed or was cancelled (or the API refused the request), 2 it had not ended
when the wait ran out (its id is printed on stderr).
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from outrider_client import Job, Outrider, OutriderError

UrlOption = Annotated[
    str | None,
    typer.Option("--url", envvar="OUTRIDER_URL", help="The API (default: http://127.0.0.1:8000)"),
]
KeyOption = Annotated[
    str | None,
    typer.Option("--key", envvar="OUTRIDER_API_KEY", help="An API key (`outrider keys create`)."),
]
FormatName = Literal["markdown", "text", "html", "raw_html", "links", "metadata"]
RenderMode = Literal["auto", "http", "browser"]


def _fail(exc: OutriderError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1)


def _check_ended(job: Job) -> None:
    if not job.ended:
        for warning in job.warnings:
            typer.echo(f"{warning.code}: {warning.message}", err=True)
        typer.echo(f"job {job.id} is still {job.status}; `outrider watch {job.id}`", err=True)
        raise typer.Exit(2)
    if job.status != "succeeded":
        error = job.error
        detail = f"{error.code}: {error.message}" if error else job.status
        typer.echo(f"job {job.id} {job.status}: {detail}", err=True)
        raise typer.Exit(1)


def scrape(
    url: Annotated[str, typer.Argument(help="The page to read.")],
    format: Annotated[FormatName, typer.Option("--format", help="What to print.")] = "markdown",
    render: Annotated[
        RenderMode, typer.Option(help="auto: a browser only when the page needs one.")
    ] = "auto",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the page.")] = 120.0,
    api_url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Scrape a page through a running API and print it (Markdown by default)."""
    spec = {"kind": "scrape", "input": {"url": url, "formats": [format], "render": render}}
    try:
        with Outrider(api_url, key) as client:
            job = client.submit(spec, wait=timeout)
    except OutriderError as exc:
        raise _fail(exc) from exc
    _check_ended(job)
    value = (job.result or {}).get(format)
    typer.echo(value if isinstance(value, str) else json.dumps(value, indent=2))


def _read_specs(path: str) -> Any:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        typer.echo(f"{path}: not JSON ({exc})", err=True)
        raise typer.Exit(1) from exc


def submit(
    file: Annotated[str, typer.Argument(help="A job spec (JSON), a list of them, or - (stdin).")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the job(s) to end.")] = False,
    timeout: Annotated[float, typer.Option(help="With --wait: give up after this.")] = 600.0,
    api_url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Submit a job (or a batch: a list, or {"jobs": [...]}) and print it as JSON."""
    specs = _read_specs(file)
    batch = specs if isinstance(specs, list) else None
    if isinstance(specs, dict) and isinstance(specs.get("jobs"), list):
        batch = specs["jobs"]
    try:
        with Outrider(api_url, key) as client:
            if batch is not None:
                jobs = client.submit_batch(batch, wait=min(timeout, 60.0) if wait else None)
                jobs = [client.wait(job.id, timeout=timeout) if wait else job for job in jobs]
            else:
                jobs = [client.submit(specs, wait=timeout if wait else None)]
    except OutriderError as exc:
        raise _fail(exc) from exc
    shown = [job.model_dump(mode="json") for job in jobs]
    typer.echo(json.dumps(shown if batch is not None else shown[0], indent=2))
    if wait:
        for job in jobs:
            _check_ended(job)


def watch(
    job_id: Annotated[str, typer.Argument(help="The job to follow.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per event.")] = False,
    api_url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Print a job's events as they happen (from its first), until it ends."""
    last = None
    try:
        with Outrider(api_url, key) as client:
            for event in client.events(job_id):
                last = event
                if as_json:
                    typer.echo(event.model_dump_json(exclude_none=True))
                    continue
                error = f"  {event.error.get('code')}" if event.error else ""
                typer.echo(f"{event.type:<10} attempt {event.attempt or 0}{error}")
    except OutriderError as exc:
        raise _fail(exc) from exc
    if last is not None and last.type != "succeeded":
        raise typer.Exit(1)


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter("a day is YYYY-MM-DD", param_hint=option) from exc


def usage(
    start: Annotated[
        str | None,
        typer.Option(help="The first UTC day, YYYY-MM-DD [default: 29 days before --end]."),
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="The last UTC day, YYYY-MM-DD [default: today].")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The API's answer, as JSON.")] = False,
    api_url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Your jobs, pages, bytes fetched and browser seconds by UTC day and kind (GET /v1/usage)."""
    first, last = _day(start, "--start"), _day(end, "--end")
    try:
        with Outrider(api_url, key) as client:
            answer = client.usage(start=first, end=last)
    except OutriderError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(answer.model_dump_json(indent=2))
        return
    header = ("day", "kind", "jobs", "succeeded", "failed", "pages", "bytes", "browser_s")
    rows = [
        (str(d.day), d.kind, d.jobs, d.succeeded, d.failed, d.pages, d.bytes_fetched,
         f"{d.browser_seconds:.1f}")
        for d in answer.days
    ]  # fmt: skip
    t = answer.totals
    rows.append(
        ("total", "", t.jobs, t.succeeded, t.failed, t.pages, t.bytes_fetched,
         f"{t.browser_seconds:.1f}")
    )  # fmt: skip
    cells = [header, *[tuple(str(cell) for cell in row) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    typer.echo(f"{answer.start} to {answer.end} (UTC)")
    for row in cells:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def register(app: typer.Typer) -> None:
    """Add the commands to the `outrider` CLI."""
    app.command()(scrape)
    app.command()(submit)
    app.command()(watch)
    app.command()(usage)

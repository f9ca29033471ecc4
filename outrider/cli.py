"""The `outrider` command: run the API, workers or everything; migrate; manage API keys; list
schedules; see the queues, workers and jobs, and retry jobs in bulk; scrape, submit and watch
through a running API (outrider/remote.py); serve MCP over stdio (outrider/mcp_server.py)."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import datetime
from typing import Annotated, Literal

import typer

from outrider import remote
from shared.settings import Settings, get_settings

app = typer.Typer(
    help="Outrider: a self-hosted back end for the web legwork of AI agents.",
    no_args_is_help=True,
    add_completion=False,
)
keys_app = typer.Typer(help="Create and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
jobs_app = typer.Typer(help="List jobs (every owner's) and retry them in bulk.")
app.add_typer(jobs_app, name="jobs")


DEV_OWNER = "dev"
DEV_KEY_FILE = "dev.key"


def _migrate(settings: Settings) -> None:
    from migrations import apply as migrate

    migrate.upgrade(settings.resolved_database_url)


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (safe to run again)."""
    settings = get_settings()
    _migrate(settings)
    typer.echo("Database is up to date.", err=True)


@app.command()
def api(
    host: Annotated[
        str | None, typer.Option(help="Bind address (default: OUTRIDER_API_HOST)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: OUTRIDER_API_PORT)")] = None,
    workers: Annotated[int, typer.Option(help="Uvicorn worker processes.")] = 1,
) -> None:
    """Run the HTTP API (uvicorn), with MCP (streamable HTTP) at /mcp."""
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "outrider.app:create_app",  # the API with MCP at /mcp
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=5,
    )


@app.command()
def worker(
    queue: Annotated[str, typer.Option(help="Queue to serve: default or browser.")] = "default",
    concurrency: Annotated[
        int | None, typer.Option(help="Jobs at once (default: OUTRIDER_WORKER_CONCURRENCY)")
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Do not run: exit 1 unless a worker of this queue on this host has a fresh "
            "heartbeat (for container healthchecks).",
        ),
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve /metrics on this port; 0: a free one, -1: off "
            "(default: OUTRIDER_WORKER_METRICS_PORT)",
            min=-1,
            max=65535,
        ),
    ] = None,
) -> None:
    """Run a worker for one queue. SIGTERM drains running jobs, then requeues the rest."""
    from shared.logging import configure_logging
    from shared.specs import QUEUES
    from worker.main import run

    if queue not in QUEUES:
        typer.echo(f"Unknown queue {queue!r}; choose from: {', '.join(QUEUES)}.", err=True)
        raise typer.Exit(2)
    settings = get_settings()
    if check:
        alive = asyncio.run(_local_worker_alive(settings, queue))
        typer.echo("healthy" if alive else "no fresh heartbeat", err=True)
        raise typer.Exit(0 if alive else 1)
    if metrics_port is not None:
        settings = settings.model_copy(update={"worker_metrics_port": metrics_port})
    configure_logging(settings)
    run(settings, queue, concurrency or settings.worker_concurrency)


async def _local_worker_alive(settings: Settings, queue: str) -> bool:
    import socket

    from redis.asyncio import Redis

    from shared.liveness import live_workers

    redis = Redis.from_url(settings.resolved_redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        workers = await live_workers(redis, f"{socket.gethostname()}:")
    except Exception:  # unreachable Redis: not healthy
        return False
    finally:
        await redis.aclose()
    return any(w.get("queue") == queue for w in workers)


async def _create_key(settings: Settings, owner_name: str) -> str:
    from shared.db import create_engine, create_sessionmaker
    from shared.repositories.owner import create_api_key, get_or_create_owner

    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine).begin() as session:
            owner = await get_or_create_owner(session, owner_name)
            _, plaintext = await create_api_key(session, owner)
        return plaintext
    finally:
        await engine.dispose()


async def _revoke_key(settings: Settings, key_or_id: str) -> tuple[int, bool]:
    """Revoke in the database, then tell running API processes: (keys revoked, told)."""
    from shared.auth import announce_revocation
    from shared.db import create_engine, create_sessionmaker
    from shared.queue import create_redis
    from shared.repositories.owner import revoke_api_key

    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine).begin() as session:
            count = await revoke_api_key(session, key_or_id)
    finally:
        await engine.dispose()
    if count == 0:
        return 0, True
    try:
        redis = create_redis(settings.resolved_redis_url, patient=False)
    except RuntimeError:  # no Redis configured at all
        return count, False
    try:
        return count, await announce_revocation(redis)
    finally:
        await redis.aclose(close_connection_pool=True)


async def _key_is_active(settings: Settings, key: str) -> bool:
    from shared.db import create_engine, create_sessionmaker
    from shared.repositories.owner import find_owner_by_key

    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            return await find_owner_by_key(session, key) is not None
    finally:
        await engine.dispose()


@keys_app.command("create")
def keys_create(
    owner: Annotated[str, typer.Option(help="Owner name; created if new.")],
) -> None:
    """Create an API key for an owner and print it (only the key, on stdout; which database
    it went to on stderr)."""
    settings = get_settings()
    _migrate(settings)
    typer.echo(asyncio.run(_create_key(settings, owner)))
    typer.echo(
        f"Created a key for owner {owner!r} in {_redacted(settings.resolved_database_url)}.",
        err=True,
    )


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key itself, or its id.")],
) -> None:
    """Revoke an API key; requests with it fail at once."""
    settings = get_settings()
    count, announced = asyncio.run(_revoke_key(settings, key))
    if count == 0:
        typer.echo("No active key matched.", err=True)
        raise typer.Exit(1)
    if announced:
        typer.echo("Revoked.", err=True)
    else:
        typer.echo(
            f"Revoked. (Redis was unreachable: running API processes refuse the key within "
            f"{settings.auth_cache_s:g} s.)",
            err=True,
        )


@app.command()
def schedules(
    owner: Annotated[str | None, typer.Option(help="Only this owner's schedules.")] = None,
    count: Annotated[
        int, typer.Option(min=1, max=20, help="How many next fire times to show.")
    ] = 3,
) -> None:
    """List schedules and their next fire times (UTC), by owner."""
    from outrider.schedules import render_schedules

    typer.echo(asyncio.run(render_schedules(get_settings(), owner, count)))


JobStatusChoice = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JobKindChoice = Literal["http", "fetch", "render", "scrape", "crawl", "map"]
QueueChoice = Literal["default", "browser"]


def _since(value: str | None) -> datetime | None:
    from outrider.inspect import parse_duration
    from shared.models import utcnow

    if value is None:
        return None
    try:
        return utcnow() - parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from exc


@app.command()
def queue(
    pause: Annotated[
        QueueChoice | None,
        typer.Option(help="Pause this queue first: workers take none of its jobs."),
    ] = None,
    resume: Annotated[QueueChoice | None, typer.Option(help="Resume this queue first.")] = None,
) -> None:
    """Per queue: ready, deferred and running jobs, the oldest ready job's wait, jobs done and
    failed in the last 1/5/60 minutes, jobs finished per second, live workers, and whether it
    is paused."""
    from outrider.inspect import pause_queue, render_queue

    settings = get_settings()
    for name, paused in ((pause, True), (resume, False)):
        if name is not None:
            asyncio.run(pause_queue(settings, name, paused))
    typer.echo(asyncio.run(render_queue(settings)))


@app.command()
def workers() -> None:
    """Every live worker process: queue, concurrency, jobs running/done/failed, heartbeat."""
    from outrider.inspect import render_workers

    typer.echo(asyncio.run(render_workers(get_settings())))


@jobs_app.callback(invoke_without_command=True)
def jobs(
    ctx: typer.Context,
    status: Annotated[JobStatusChoice | None, typer.Option(help="Only jobs in this state.")] = None,
    kind: Annotated[JobKindChoice | None, typer.Option(help="Only jobs of this kind.")] = None,
    owner: Annotated[str | None, typer.Option(help="Only this owner's jobs.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only jobs that finished within this long: 30m, 1h, 2d.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="How many to show.")] = 20,
) -> None:
    """List the newest jobs of every owner (with their errors); `jobs retry` requeues in bulk."""
    if ctx.invoked_subcommand is not None:
        return
    from outrider.inspect import render_jobs
    from shared.repositories.operator import JobQuery

    query = JobQuery(status=status, kind=kind, owner=owner, finished_since=_since(since))
    typer.echo(asyncio.run(render_jobs(get_settings(), query, limit)))


@jobs_app.command("retry")
def jobs_retry(
    since: Annotated[
        str, typer.Option(help="Requeue jobs that finished within this long: 30m, 1h, 2d.")
    ],
    status: Annotated[
        Literal["failed", "cancelled"], typer.Option(help="Which ended jobs to requeue.")
    ] = "failed",
    kind: Annotated[JobKindChoice | None, typer.Option(help="Only jobs of this kind.")] = None,
    owner: Annotated[str | None, typer.Option(help="Only this owner's jobs.")] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Requeue at most this many (default: all).")
    ] = None,
) -> None:
    """Queue failed (or cancelled) jobs again in bulk, each with a fresh attempt budget, as
    POST /v1/jobs/{id}/retry does for one."""
    from outrider.inspect import retry_jobs
    from shared.repositories.operator import JobQuery

    query = JobQuery(status=status, kind=kind, owner=owner, finished_since=_since(since))
    count = asyncio.run(retry_jobs(get_settings(), query, limit))
    typer.echo(f"Requeued {count} {status} job{'s' if count != 1 else ''}.")


@app.command()
def crawl(
    url: Annotated[str, typer.Argument(help="Where to start.")],
    depth: Annotated[int | None, typer.Option(help="Links to follow (default: 2).")] = None,
    limit: Annotated[int | None, typer.Option(help="Pages at most (default: 1000).")] = None,
    include: Annotated[
        list[str] | None, typer.Option(help="Glob on the URL path to crawl (repeatable).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Glob on the URL path to skip (repeatable).")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow it with a progress bar to its end.")] = False,
    api_url: Annotated[
        str | None,
        typer.Option(
            "--url",
            "--api-url",
            envvar="OUTRIDER_URL",
            help="The API (default: http://127.0.0.1:OUTRIDER_API_PORT).",
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            envvar="OUTRIDER_API_KEY", help="An API key (default: the dev key of `make run`)."
        ),
    ] = None,
) -> None:
    """Crawl a site through the API: each page a job of its own (docs/crawl.md)."""
    from rich.console import Console

    from outrider.crawl import CrawlError, CrawlRequest, run_crawl, summary
    from outrider.dev import read_dev_key

    settings = get_settings()
    key = key or read_dev_key(settings.data_dir / DEV_KEY_FILE)
    if not key:
        typer.echo("error: no API key: pass --key (or run `make run` for a dev key)", err=True)
        sys.exit(2)
    request = CrawlRequest(
        api_url=api_url or f"http://127.0.0.1:{settings.api_port}",
        key=key,
        url=url,
        depth=depth,
        limit=limit,
        include=include or [],
        exclude=exclude or [],
    )
    console = Console()
    try:
        job = asyncio.run(run_crawl(request, wait, console))
    except CrawlError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if wait:
        console.print(summary(job))
        sys.exit(0 if job["status"] == "succeeded" else 1)


@app.command()
def dev(
    host: Annotated[str, typer.Option(help="API bind address.")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="API port (default: OUTRIDER_API_PORT)")] = None,
) -> None:
    """Run everything on this machine (what `make run` starts): embedded Redis unless
    OUTRIDER_REDIS_URL is set, SQLite unless OUTRIDER_DATABASE_URL is set, the API and one
    worker per queue. Ctrl-C stops it all."""
    from outrider.dev import DevError, read_dev_key, run_dev

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.resolved_secret_key()  # create it once, before the children race to
    _migrate(settings)
    key_path = settings.data_dir / DEV_KEY_FILE
    key = read_dev_key(key_path)
    if key is None or not asyncio.run(_key_is_active(settings, key)):
        key = asyncio.run(_create_key(settings, DEV_OWNER))
        fd = os.open(key_path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
    try:
        run_dev(settings, key, host, port or settings.api_port)
    except DevError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)


remote.register(app)


@app.command()
def mcp(
    api_url: remote.UrlOption = None,
    key: remote.KeyOption = None,
) -> None:
    """Serve MCP over stdio (for desktop agents and IDEs); tools call the API at --url with
    --key (OUTRIDER_URL, OUTRIDER_API_KEY)."""
    import anyio

    from outrider.mcp_server import run_stdio

    anyio.run(run_stdio, api_url, key)


def main() -> None:
    """The `outrider` command: a backing service that is missing or down is one clear line on
    stderr and exit status 1, not a traceback."""
    try:
        app()
    except Exception as exc:
        problem = service_problem(exc)
        if problem is None:
            raise
        typer.echo(f"error: {problem}", err=True)
        sys.exit(1)


def service_problem(exc: BaseException) -> str | None:
    """What a user must fix, if `exc` says a backing service is unset or unreachable."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import InterfaceError, OperationalError

    from shared.settings import NoRedisConfigured

    if isinstance(exc, NoRedisConfigured):
        return str(exc)
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        url = _redacted(get_settings().redis_url or "the embedded Redis")
        return f"Redis ({url}) is unreachable: {exc}. Is it running?"
    if "too many clients" in str(exc):
        url = _redacted(get_settings().resolved_database_url)
        return f"The database ({url}) has no free connection (too many clients); retry later."
    if isinstance(exc, OperationalError | InterfaceError | ConnectionRefusedError):
        url = _redacted(get_settings().resolved_database_url)
        if "no such table" in str(exc) or "UndefinedTable" in repr(getattr(exc, "orig", exc)):
            return f"The database ({url}) has no Outrider tables: run `outrider migrate`."
        return f"The database ({url}) is unreachable: {first_line(exc)}. Is it running?"
    return None


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__

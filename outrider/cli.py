"""The `outrider` command: run the API, workers or everything; migrate; manage API keys; list
schedules."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Annotated

import typer

from shared.settings import Settings, get_settings

app = typer.Typer(
    help="Outrider: a self-hosted back end for the web legwork of AI agents.",
    no_args_is_help=True,
    add_completion=False,
)
keys_app = typer.Typer(help="Create and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

DEV_OWNER = "dev"
DEV_KEY_FILE = "dev.key"


def _migrate(settings: Settings) -> None:
    from shared import migrate

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
        str | None, typer.Option(help="Bind address [default: OUTRIDER_API_HOST]")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: OUTRIDER_API_PORT]")] = None,
    workers: Annotated[int, typer.Option(help="Uvicorn worker processes.")] = 1,
) -> None:
    """Run the HTTP API (uvicorn)."""
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "api.app:create_app",
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
        int | None, typer.Option(help="Jobs at once [default: OUTRIDER_WORKER_CONCURRENCY]")
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Do not run: exit 1 unless a worker of this queue on this host has a fresh "
            "heartbeat (for container healthchecks).",
        ),
    ] = False,
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


async def _revoke_key(settings: Settings, key_or_id: str) -> int:
    from shared.db import create_engine, create_sessionmaker
    from shared.repositories.owner import revoke_api_key

    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine).begin() as session:
            return await revoke_api_key(session, key_or_id)
    finally:
        await engine.dispose()


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
    """Create an API key for an owner and print it (only the key, on stdout)."""
    settings = get_settings()
    _migrate(settings)
    typer.echo(asyncio.run(_create_key(settings, owner)))


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key itself, or its id.")],
) -> None:
    """Revoke an API key; requests with it fail at once."""
    settings = get_settings()
    count = asyncio.run(_revoke_key(settings, key))
    if count == 0:
        typer.echo("No active key matched.", err=True)
        raise typer.Exit(1)
    typer.echo("Revoked.", err=True)


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


@app.command()
def dev(
    host: Annotated[str, typer.Option(help="API bind address.")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="API port [default: OUTRIDER_API_PORT]")] = None,
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


def main() -> None:
    app()

"""Real forward proxies on loopback for the proxy tests, and a target that records its clients.

`tinyproxy` (an HTTP proxy with CONNECT and Basic auth) and `microsocks` (SOCKS5 with
username/password) are Debian's, installed by `make install`. Each proxy binds its outgoing
connections to a loopback address of its own (127.0.0.2, 127.0.0.3, ...), so the target can
tell who connected to it: the worker itself comes from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from outrider.dev import free_port
from tests.adversarial.drip import DripServer

TINYPROXY = shutil.which("tinyproxy")
MICROSOCKS = shutil.which("microsocks")
PAGE_TEXT = " ".join(["Proxies carry this page to the worker and the browser."] * 12)


@dataclass
class RunningProxy:
    """A proxy process: its URL (no credentials) and the address its connections come from."""

    url: str
    port: int
    source: str
    process: asyncio.subprocess.Process

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            await asyncio.wait_for(self.process.wait(), 10)


async def _wait_listening(port: int, process: asyncio.subprocess.Process) -> None:
    for _ in range(200):
        if process.returncode is not None:
            raise RuntimeError(f"the proxy exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the proxy did not listen on {port}")


@contextlib.asynccontextmanager
async def tinyproxy(
    workdir: Path, source: str, credentials: str | None = None
) -> AsyncIterator[RunningProxy]:
    """tinyproxy on a free loopback port; `credentials` (`user:password`) turns on Basic auth."""
    assert TINYPROXY is not None
    port = free_port()
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        f"Bind {source}",
        "Timeout 30",
        "MaxClients 100",
        "LogLevel Warning",
        f'LogFile "{workdir}/tinyproxy-{port}.log"',
        f'PidFile "{workdir}/tinyproxy-{port}.pid"',
    ]
    if credentials:
        user, _, password = credentials.partition(":")
        lines.append(f"BasicAuth {user} {password}")
    config = workdir / f"tinyproxy-{port}.conf"
    config.write_text("\n".join(lines) + "\n")
    process = await asyncio.create_subprocess_exec(
        TINYPROXY,
        "-d",
        "-c",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    proxy = RunningProxy(f"http://127.0.0.1:{port}", port, source, process)
    try:
        await _wait_listening(port, process)
        yield proxy
    finally:
        await proxy.stop()


@contextlib.asynccontextmanager
async def microsocks(source: str, credentials: str) -> AsyncIterator[RunningProxy]:
    """microsocks (SOCKS5) on a free loopback port, with username/password auth."""
    assert MICROSOCKS is not None
    port = free_port()
    user, _, password = credentials.partition(":")
    process = await asyncio.create_subprocess_exec(
        MICROSOCKS,
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-u",
        user,
        "-P",
        password,
        "-b",
        source,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    proxy = RunningProxy(f"socks5://127.0.0.1:{port}", port, source, process)
    try:
        await _wait_listening(port, process)
        yield proxy
    finally:
        await proxy.stop()


@dataclass
class Visit:
    path: str
    client: str  # the peer address: who connected
    headers: dict[str, str]


@dataclass
class RecordingSite:
    """A loopback site that records every request's path, client address and headers."""

    base_url: str = ""
    visits: list[Visit] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base_url + path

    def clients(self, path: str | None = None) -> set[str]:
        return {v.client for v in self.visits if path is None or v.path == path}


def _site_app(site: RecordingSite) -> web.Application:
    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        site.visits.append(Visit(request.path, request.remote or "", dict(request.headers)))
        return await handler(request)

    async def robots(_: web.Request) -> web.Response:
        return web.Response(text="User-agent: *\nAllow: /\n")

    async def page(_: web.Request) -> web.Response:
        html = f"<html><head><title>proxied</title></head><body><p>{PAGE_TEXT}</p></body></html>"
        return web.Response(text=html, content_type="text/html")

    async def api(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path, "ok": True})

    app = web.Application(middlewares=[record])
    app.router.add_get("/robots.txt", robots)
    app.router.add_get("/page", page)
    app.router.add_get("/page/{name}", page)
    app.router.add_route("*", "/api", api)
    return app


@contextlib.asynccontextmanager
async def recording_site(host: str = "127.0.0.1") -> AsyncIterator[RecordingSite]:
    site = RecordingSite()
    runner = web.AppRunner(_site_app(site), access_log=None)
    await runner.setup()
    tcp = web.TCPSite(runner, host, 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    site.base_url = f"http://{host}:{port}"
    try:
        yield site
    finally:
        await runner.cleanup()


@dataclass
class PeerDripServer(DripServer):
    """tests/adversarial/drip.py's raw-socket server (bodies in pieces, every framing and
    coding) that also records the address of every client that connected."""

    peers: set[str] = field(default_factory=set)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peers.add(writer.get_extra_info("peername")[0])
        await super().serve(reader, writer)


@contextlib.asynccontextmanager
async def start_peer_drip_server(
    seed: int, max_piece: int = 16 * 1024, max_pause_s: float = 0.004
) -> AsyncIterator[PeerDripServer]:
    """A PeerDripServer on a free port of 127.0.0.1, for the duration of the block."""
    server = PeerDripServer(seed=seed, max_piece=max_piece, max_pause_s=max_pause_s)
    tcp = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    server.base_url = f"http://127.0.0.1:{tcp.sockets[0].getsockname()[1]}"
    try:
        yield server
    finally:
        tcp.close()
        for writer in server.connections:  # idle keep-alive connections: their handlers end
            writer.close()
        if server.connections:
            await asyncio.wait(list(server.connections.values()), timeout=10)
        await tcp.wait_closed()

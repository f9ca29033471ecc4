"""Real forward proxies on loopback for the proxy tests, and a target that records its clients.

`tinyproxy` (an HTTP proxy with CONNECT and Basic auth) and `microsocks` (SOCKS5 with
username/password) are Debian's, installed by `make install`. Each proxy binds its outgoing
connections to a loopback address of its own (127.0.0.2, 127.0.0.3, ...), so the target can
tell who connected to it: the worker itself comes from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import shutil
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from outrider.dev import free_port
from tests.adversarial.drip import DripServer, serve_drip
from tests.helpers import serve_aiohttp

TINYPROXY = shutil.which("tinyproxy")
MICROSOCKS = shutil.which("microsocks")
# Every proxy test module's `pytestmark`: skipped (a failure in CI) without the proxy tools.
NEEDS_PROXY_TOOLS = pytest.mark.skipif(
    TINYPROXY is None or MICROSOCKS is None,
    reason="needs tinyproxy and microsocks (make install, as root)",
)
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
    """A RecordingSite on a free port of `host`."""
    site = RecordingSite()
    async with serve_aiohttp(_site_app(site), host) as site.base_url:
        yield site


@dataclass
class PeerDripServer(DripServer):
    """tests/adversarial/drip.py's raw-socket server (bodies in pieces, every framing and
    coding) that also records the address of every client that connected."""

    peers: set[str] = field(default_factory=set)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peers.add(writer.get_extra_info("peername")[0])
        await super().serve(reader, writer)


def start_peer_drip_server(
    seed: int, max_piece: int = 16 * 1024, max_pause_s: float = 0.004
) -> contextlib.AbstractAsyncContextManager[PeerDripServer]:
    """A PeerDripServer on a free port of 127.0.0.1, for the duration of the block."""
    return serve_drip(PeerDripServer(seed=seed, max_piece=max_piece, max_pause_s=max_pause_s))


@dataclass(frozen=True)
class PrivateCA:
    """A private CA's certificate (PEM: what OUTRIDER_PROXY_CA_FILE names) and a server
    certificate it signed for one IP address, with that server's key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def private_ca(workdir: Path, ip: str) -> PrivateCA:
    """A CA and a certificate for `ip` signed by it (both valid for a day, strict-X.509 clean)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Outrider test CA"))
        .issuer_name(_name("Outrider test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(ip))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = PrivateCA(workdir / "ca.pem", workdir / "proxy.pem", workdir / "proxy-key.pem")
    files.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, RuntimeError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def tls_front(upstream: RunningProxy, ca: PrivateCA) -> AsyncIterator[str]:
    """An `https://` proxy: TLS on a free port of 127.0.0.1 (`ca`'s certificate), every
    connection relayed in the clear to `upstream` (a tinyproxy). Yields the proxy's URL."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(ca.cert_file, ca.key_file)
    relays: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream.port)
        except OSError:
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        relays.add(task)
        try:
            await asyncio.gather(_relay(reader, up_writer), _relay(up_reader, writer))
        finally:
            relays.discard(task)

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    try:
        yield f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for task in list(relays):
            task.cancel()
        if relays:
            await asyncio.wait(list(relays), timeout=10)

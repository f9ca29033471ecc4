"""The browser's only way out: a local HTTP/CONNECT proxy that applies the egress policy.

Each browser context (one job) gets a door of its own: a listener on a free loopback port,
given to the context as its proxy (`<-loopback>` bypasses nothing). Chromium itself is launched
with `--proxy-server` pointing at the proxy's main listener, which refuses everything without a
DNS lookup: what arrives there is the browser's own background traffic (update and account
services), which no page asked for and which must not leave the machine. Through its door,
every request a page makes (documents, subresources, fetch/XHR, iframes, redirect hops,
WebSockets, TURN over TCP) arrives as a CONNECT or an absolute-form HTTP request. For each one
the proxy checks the URL (`policy.check_url`), resolves the host itself, checks EVERY answer
with `policy.check_ip`, and connects to a checked address: there is no second resolution, so a
DNS answer that changes between calls (rebinding) cannot reach a forbidden address. Refusals
are a 403 (502 for DNS and connect failures) carrying `X-Outrider-Egress: <token> <code>`; they
are also remembered per host:port, because Chromium hides a refused CONNECT's answer behind
net::ERR_TUNNEL_CONNECTION_FAILED. Plain HTTP is one request per connection (`Connection:
close`), so a kept-alive socket can never carry a request that was not checked.

A context of a job whose agent has proxies gets a door chained to the job's upstream proxy:
the door judges each target exactly as above (URL, then every resolved address), then,
instead of connecting to it, opens a tunnel to it through the upstream proxy (CONNECT or
SOCKS5, worker/proxy_tunnel.py; the proxy's own addresses judged too). A proxy that fails is
a 502 `proxy_unavailable` to Chromium, and the door remembers the failure (`Door.failure`)
so the job can bench the proxy and try the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import socket
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from yarl import URL

from shared.egress import EgressPolicy, parse_ip_literal
from shared.errors import EgressBlocked
from shared.logging import get_logger
from worker import counters
from worker.proxy_tunnel import ProxyFailed, ProxyRoute, TunnelRefused, open_tunnel
from worker.refusal import POLICY_CODES, Refusal

log = get_logger(__name__)

Resolver = Callable[[str, int], Awaitable[list[str]]]
MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT_S = 10.0
DNS_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
REMEMBERED_REFUSALS = 512
HOP_HEADERS = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authorization"})
MARKER_HEADER = "X-Outrider-Egress"


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host:port (TCP)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def resolve_checked(
    policy: EgressPolicy, url: str, resolver: Resolver | None = None
) -> tuple[str, int, list[str]]:
    """Check `url`, resolve its host (default: `system_resolver`) and check every address:
    (host, port, addresses). Raises Refusal (blocked_destination, invalid_url, dns_not_found)."""
    try:
        checked = URL(policy.check_url(url))
    except EgressBlocked as exc:
        raise Refusal(exc.code, str(exc)) from None
    host, port = checked.raw_host or "", checked.port or 80
    literal = parse_ip_literal(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            async with asyncio.timeout(DNS_TIMEOUT_S):
                addresses = await (resolver or system_resolver)(host, port)
        except (OSError, TimeoutError):
            addresses = []
        if not addresses:
            raise Refusal("dns_not_found", f"The host {host!r} could not be resolved.", 502)
    try:
        for address in addresses:  # all of them: Chromium never sees them, we pick one
            policy.check_ip(address, port)
    except EgressBlocked as exc:
        raise Refusal(exc.code, str(exc)) from None
    return host, port, addresses


async def _open(
    addresses: list[str], port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    last: Exception | None = None
    for address in addresses:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                return await asyncio.open_connection(address, port, limit=MAX_HEAD_BYTES)
        except (OSError, TimeoutError) as exc:
            last = exc
    raise Refusal("connection_error", f"Could not connect: {last}", 502)


def _split_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return lines[0], headers


def _rewrite(start_line: str, headers: list[tuple[str, str]]) -> bytes:
    kept = [(n, v) for n, v in headers if n.lower() not in HOP_HEADERS]
    lines = [start_line, *(f"{n}: {v}" for n, v in kept), "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        pass


async def _pipe(
    a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    b: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    await asyncio.gather(_copy(a[0], b[1]), _copy(b[0], a[1]))


@dataclass(eq=False)
class Door:
    """One browser context's way out: its proxy URL, the upstream proxy it chains to (None:
    direct) and that proxy's first failure, if any."""

    url: str = ""
    upstream: ProxyRoute | None = None
    failure: ProxyFailed | None = None


def _streams(
    transport: asyncio.Transport, early: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Streams over a tunnel's transport (its protocol replaced)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_HEAD_BYTES, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    if early:
        reader.feed_data(early)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


class EgressProxy:
    """The local proxy of one browser worker (bound to 127.0.0.1 on a free port)."""

    def __init__(self, policy: EgressPolicy, resolver: Resolver | None = None) -> None:
        self.policy = policy
        self.resolver = resolver
        self.token = secrets.token_hex(8)
        self.refused: OrderedDict[str, Refusal] = OrderedDict()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Open the main listener: the browser-wide proxy, which refuses everything."""
        self._server = await asyncio.start_server(
            self._accept_background, "127.0.0.1", 0, limit=MAX_HEAD_BYTES
        )
        self.port = self._server.sockets[0].getsockname()[1]

    @contextlib.asynccontextmanager
    async def door(self, upstream: ProxyRoute | None = None) -> AsyncIterator[Door]:
        """A door for one browser context (its `url` the context's proxy): what arrives there
        is judged by the policy, then connected directly or through `upstream`. Closed (to new
        connections) when the block ends."""
        door = Door(upstream=upstream)
        server = await asyncio.start_server(
            functools.partial(self._accept, door), "127.0.0.1", 0, limit=MAX_HEAD_BYTES
        )
        door.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            yield door
        finally:
            server.close()

    def _accept_background(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.ensure_future(self._refuse_background(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refuse_background(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            target = _split_head(head)[0].split(" ", 2)[1]
            log.debug("browser.background_request_refused", target=target[:200])
            refusal = Refusal("blocked_destination", "No page asked for this request.", 403)
            await self._refuse(writer, refusal)
        except (OSError, ValueError, IndexError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except asyncio.LimitOverrunError:
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def refusal_for(self, url: str) -> Refusal | None:
        """The last refusal for this URL's host and port, if any."""
        parsed = URL(url)
        return self.refused.get(f"{parsed.raw_host}:{parsed.port}")

    def marked_code(self, header_value: str | None) -> str | None:
        """The error code in a response the proxy made itself, else None."""
        token, _, code = (header_value or "").partition(" ")
        return code if token == self.token and code else None

    def _remember(self, host: str, port: int, refusal: Refusal) -> None:
        key = f"{host}:{port}"
        self.refused[key] = refusal
        self.refused.move_to_end(key)
        while len(self.refused) > REMEMBERED_REFUSALS:
            self.refused.popitem(last=False)
        log.info("browser.egress_refused", host=host, port=port, code=refusal.code)

    def _accept(
        self, door: Door, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.ensure_future(self._serve(door, reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(
        self, door: Door, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            request_line, headers = _split_head(head)
            method, target, _version = request_line.split(" ", 2)
            if method == "CONNECT":
                await self._tunnel(door, target, reader, writer)
            else:
                await self._forward(door, method, target, headers, reader, writer)
        except Refusal as refusal:
            await self._refuse(writer, refusal)
        except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError):
            pass  # a client that went away or spoke nonsense: nothing to answer
        except asyncio.LimitOverrunError:
            await self._refuse(writer, Refusal("invalid_request", "Request head too large.", 431))
        finally:
            writer.close()

    async def _checked(
        self, door: Door, url: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        parsed = URL(url)
        try:
            host, port, addresses = await resolve_checked(self.policy, url, self.resolver)
            if door.upstream is None:
                return await _open(addresses, port)
            return await self._via(door, door.upstream, host, port, addresses)
        except Refusal as refusal:
            # Remembered refusals explain any context's failures to the host: a proxy's (the
            # job's own, kept in its door) must never show in another job.
            if refusal.code != "proxy_unavailable":
                self._remember(parsed.raw_host or "", parsed.port or 0, refusal)
            if refusal.code in POLICY_CODES:  # not DNS or connect failures
                counters.egress_blocked("browser_proxy", refusal)
            raise

    async def _via(
        self, door: Door, route: ProxyRoute, host: str, port: int, addresses: list[str]
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A tunnel to the judged target through the upstream proxy (itself judged)."""
        _, _, proxy_addresses = await resolve_checked(
            self.policy, route.address.probe_url, self.resolver
        )
        try:
            transport, early = await open_tunnel(
                route, proxy_addresses, host, port, addresses, CONNECT_TIMEOUT_S
            )
        except ProxyFailed as failure:
            if door.failure is None:
                door.failure = failure
            raise Refusal("proxy_unavailable", str(failure), 502) from None
        except TunnelRefused as refused:  # no proxy URL in it: refusals are remembered
            message = f"The upstream proxy refused the connection ({refused.status})."
            raise Refusal("connection_error", message, 502) from None
        return _streams(transport, early)

    async def _tunnel(
        self, door: Door, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # CONNECT carries host:port only; judge it as the https URL it stands for.
        upstream = await self._checked(door, f"https://{target}/")
        try:
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await writer.drain()
            await _pipe((reader, writer), upstream)
        finally:
            upstream[1].close()

    async def _forward(
        self,
        door: Door,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        if not target.lower().startswith("http://"):
            raise Refusal("invalid_url", "Only absolute http:// requests are proxied.", 400)
        upstream = await self._checked(door, target)
        up_reader, up_writer = upstream
        try:
            path = URL(target).raw_path_qs or "/"
            up_writer.write(_rewrite(f"{method} {path} HTTP/1.1", headers))
            await up_writer.drain()
            sending = asyncio.ensure_future(_copy(reader, up_writer))
            try:
                status_line, response_headers = _split_head(await up_reader.readuntil(b"\r\n\r\n"))
                writer.write(_rewrite(status_line, response_headers))
                await _copy(up_reader, writer)
            finally:
                sending.cancel()
        finally:
            up_writer.close()

    async def _refuse(self, writer: asyncio.StreamWriter, refusal: Refusal) -> None:
        body = f"{refusal.code}: {refusal.message}\n".encode()
        head = (
            f"HTTP/1.1 {refusal.status} Refused by the egress policy\r\n"
            f"{MARKER_HEADER}: {self.token} {refusal.code}\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        with contextlib.suppress(OSError, RuntimeError):
            writer.write(head + body)
            await writer.drain()

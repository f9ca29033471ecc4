"""A tunnel through an upstream proxy to a target the worker has already judged.

Every proxied connection (aiohttp's, in worker/http_client.py, and the browser's egress proxy's,
in worker/browser_egress.py) is a tunnel: HTTP CONNECT (`http`/`https` proxies; TLS to the
proxy for `https`) or a SOCKS5 CONNECT, to the target's host and port, plain `http` targets
included. So the proxy sees only where to connect, and every byte after its answer is the
target's: a 407 the proxy sends on CONNECT is the proxy's failure (`ProxyFailed`), a 5xx
inside the tunnel is the target's answer. A 5xx to CONNECT (tinyproxy answers 500, Squid 503
or 504, others 502 when the TARGET cannot be reached), a SOCKS5 "unreachable", "refused",
"TTL expired" or "general failure" reply, and no answer at all in time (the proxy may be
waiting for a target that drops packets) may be either's: the ProxyFailed names the `target`
it was about, and worker/proxies.py decides whom to blame. The target's name is resolved and
EVERY address checked by the egress policy before the proxy is asked (the caller does it); for
SOCKS5 the proxy is given the checked address itself, for HTTP CONNECT the name (so TLS
and virtual hosts work as they do without a proxy; the proxy resolves it again).

Credentials (`user:password` from the agent's secret) are sent in `Proxy-Authorization:
Basic` or SOCKS5's username/password method, and appear in no message, log or repr.

An `https://` proxy's certificate is verified (its name or IP address, and its chain) against
the system's CAs, plus those of OUTRIDER_PROXY_CA_FILE (`proxy_tls`: one context per process);
a proxy whose certificate fails is benched like one that cannot be reached.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import socket
import ssl
import struct
from dataclasses import dataclass, field
from functools import lru_cache

from shared.proxies import ProxyAddress

MAX_HEAD_BYTES = 16 * 1024


class ProxyFailed(Exception):
    """The upstream proxy failed (could not be reached, refused our credentials, answered
    5xx or nonsense to CONNECT): the attempt moves on to the next proxy. With `target` (the
    `host:port` it was asked for), the proxy said it could not reach that target: its fault or
    the target's (worker/proxies.py); without, its own (it is benched). The message names the
    proxy without credentials."""

    def __init__(
        self, proxy_url: str, reason: str, status: int | None = None, target: str | None = None
    ) -> None:
        super().__init__(f"The proxy {proxy_url} failed: {reason}")
        self.proxy_url = proxy_url
        self.reason = reason
        self.status = status
        self.target = target


class TunnelRefused(Exception):
    """The proxy answered CONNECT with a client error other than 407 (e.g. 403: its own
    rules refuse the target): not the proxy's failure, the job's."""

    def __init__(self, proxy_url: str, status: int) -> None:
        super().__init__(f"The proxy {proxy_url} refused the connection ({status}).")
        self.status = status


@lru_cache(maxsize=8)
def proxy_tls(ca_file: str | None = None) -> ssl.SSLContext:
    """The TLS context for `https://` proxies: the system's CAs, plus `ca_file`'s (PEM).
    OSError or ssl.SSLError when `ca_file` cannot be read."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


@dataclass(frozen=True)
class ProxyRoute:
    """One upstream proxy as one attempt uses it. `credentials` (`user:password`) live here
    in memory only; `tls` is what an `https://` proxy's certificate is checked with."""

    address: ProxyAddress
    id: str  # shared/proxies.py proxy_id: the Redis keys' name for it
    credentials: str | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    @property
    def url(self) -> str:
        """The proxy's URL without credentials: what results and logs name."""
        return self.address.url

    @property
    def pool_key(self) -> tuple[str, str]:
        """What a connection pool is kept for: the proxy and (a hash of) its credentials."""
        secret = hashlib.sha256(self.credentials.encode()).hexdigest() if self.credentials else ""
        return (self.address.url, secret)


class _Handshake(asyncio.Protocol):
    """Collects the proxy's answer until the caller has what it needs."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer.extend(data)
        self._wake()

    def eof_received(self) -> bool | None:
        self.closed = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read_until(self, marker: bytes) -> bytes:
        while (end := self.buffer.find(marker)) < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise ValueError("the proxy's answer is too long")
            await self._more()
        head = bytes(self.buffer[: end + len(marker)])
        del self.buffer[: end + len(marker)]
        return head

    async def read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            await self._more()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    async def _more(self) -> None:
        if self.closed:
            raise ConnectionResetError("the proxy closed the connection")
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter
        self._waiter = None


def _basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode("ascii")


def authority(host: str, port: int) -> str:
    """`host:port` as CONNECT names it (an IPv6 address in brackets), lower case."""
    host = host.lower()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _http_connect(route: ProxyRoute, shake: _Handshake, host: str, port: int) -> None:
    assert shake.transport is not None
    target = authority(host, port)
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if route.credentials:
        lines.append(f"Proxy-Authorization: {_basic(route.credentials)}")
    shake.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    head = await shake.read_until(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ProxyFailed(route.url, "it answered CONNECT with something that is not HTTP")
    status = int(parts[1])
    if 200 <= status < 300:
        return
    if status in (401, 407):  # 407, or 401 from some (tinyproxy): the target saw nothing
        raise ProxyFailed(route.url, f"it refused our credentials ({status})", status)
    if status >= 500:  # "cannot reach it": the target may be down, or the proxy broken
        raise ProxyFailed(route.url, f"it answered CONNECT {target} with {status}", status, target)
    if status < 200:
        raise ProxyFailed(route.url, f"it answered CONNECT with {status}", status)
    raise TunnelRefused(route.url, status)


_SOCKS_ERRORS = {
    1: "general failure",
    2: "not allowed by its rules",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}
# Replies that may be about the target rather than the proxy (see ProxyFailed.target).
_SOCKS_TARGET_ERRORS = frozenset({1, 3, 4, 5, 6})


async def _socks5_connect(
    route: ProxyRoute, shake: _Handshake, address: str, port: int, target: str
) -> None:
    assert shake.transport is not None
    write = shake.transport.write
    methods = b"\x02" if route.credentials else b"\x00"
    write(b"\x05\x01" + methods)
    version, method = await shake.read_exactly(2)
    if version != 5 or method != methods[0]:
        raise ProxyFailed(route.url, "it refused our SOCKS5 authentication method", 407)
    if route.credentials:
        user, _, password = route.credentials.partition(":")
        user_b, password_b = user.encode()[:255], password.encode()[:255]
        write(b"\x01" + bytes([len(user_b)]) + user_b + bytes([len(password_b)]) + password_b)
        _, status = await shake.read_exactly(2)
        if status != 0:
            raise ProxyFailed(route.url, "it refused our credentials (SOCKS5)", 407)
    ip = ipaddress.ip_address(address)
    kind = b"\x01" if ip.version == 4 else b"\x04"
    write(b"\x05\x01\x00" + kind + ip.packed + struct.pack("!H", port))
    reply = await shake.read_exactly(4)
    if reply[0] != 5:
        raise ProxyFailed(route.url, "it answered SOCKS5 CONNECT with something else")
    if reply[1] != 0:
        reason = _SOCKS_ERRORS.get(reply[1], f"error {reply[1]}")
        if reply[1] == 2:
            raise TunnelRefused(route.url, 403)
        maybe_target = target if reply[1] in _SOCKS_TARGET_ERRORS else None
        raise ProxyFailed(
            route.url, f"SOCKS5 CONNECT {target} failed: {reason}", None, maybe_target
        )
    length = {1: 4, 4: 16}.get(reply[3])
    if length is None:  # a domain name: its length first
        length = (await shake.read_exactly(1))[0]
    await shake.read_exactly(length + 2)


async def open_tunnel(
    route: ProxyRoute,
    proxy_addresses: list[str],
    host: str,
    port: int,
    target_addresses: list[str],
    timeout_s: float,
) -> tuple[asyncio.Transport, bytes]:
    """Connect to the proxy (one of `proxy_addresses`, judged by the caller) and open a tunnel
    to `host`:`port` (whose `target_addresses` the caller has judged). Returns the transport,
    positioned at the start of the target's bytes, and any of them read already. ProxyFailed
    when the proxy fails, TunnelRefused when it refuses the target."""
    loop = asyncio.get_running_loop()
    last: BaseException | None = None
    for proxy_ip in proxy_addresses:
        transport: asyncio.Transport | None = None
        try:
            async with asyncio.timeout(timeout_s):
                sock = await _connect_socket(proxy_ip, route.address.port)
                tls = route.address.scheme == "https"
                shaker = _Handshake()
                created, _ = await loop.create_connection(
                    lambda shaker=shaker: shaker,
                    sock=sock,
                    ssl=(route.tls or proxy_tls()) if tls else None,
                    server_hostname=route.address.host if tls else None,
                )
                transport = created
                if route.address.scheme == "socks5":
                    target = authority(host, port)
                    await _socks5_connect(route, shaker, target_addresses[0], port, target)
                else:
                    await _http_connect(route, shaker, host, port)
                return transport, bytes(shaker.buffer)
        except (ProxyFailed, TunnelRefused):
            if transport is not None:
                transport.close()
            raise
        except TimeoutError as exc:
            if transport is not None:  # it took our CONNECT: it may be waiting for the target
                transport.close()
                target = authority(host, port)
                reason = f"no answer to CONNECT {target} within {timeout_s:g} s"
                raise ProxyFailed(route.url, reason, None, target) from None
            last = exc
        except (OSError, ValueError, ssl.SSLError) as exc:
            if transport is not None:
                transport.close()
            last = exc
    reason = type(last).__name__ if last is not None else "no address"
    detail = str(last) if isinstance(last, OSError) and last.strerror else ""
    raise ProxyFailed(route.url, f"could not connect ({detail or reason})")


async def _connect_socket(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (address, port))
    except BaseException:
        with contextlib.suppress(OSError):
            sock.close()
        raise
    return sock

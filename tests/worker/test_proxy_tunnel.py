"""Opening a tunnel (worker/proxy_tunnel.py) against proxies that answer as the network hands
bytes over: a byte at a time with pauses, with the target's first bytes glued to the answer,
with a bound address given as a name, cut off, or far too long. No services: the proxies are
scripted asyncio servers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from shared.proxies import parse_proxy_url
from tests.worker.support import closed_port
from worker.proxy_tunnel import ProxyFailed, ProxyRoute, open_tunnel

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def scripted_proxy(script: Script) -> AsyncIterator[int]:
    """A one-shot 'proxy' on a free loopback port that runs `script`; yields its port."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await script(reader, writer)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def drip(writer: asyncio.StreamWriter, data: bytes) -> None:
    for n in range(len(data)):
        writer.write(data[n : n + 1])
        await writer.drain()
        await asyncio.sleep(0.002)


async def tunnel(scheme: str, port: int, credentials: str | None = None, expect: int = 4) -> bytes:
    """Open a tunnel to shop.example:80 through the proxy, send `ping`: the target's first
    `expect` bytes (those read with the proxy's answer, then the rest)."""
    route = ProxyRoute(parse_proxy_url(f"{scheme}://127.0.0.1:{port}"), "p", credentials)
    transport, early = await open_tunnel(route, ["127.0.0.1"], "shop.example", 80, ["192.0.2.7"], 5)
    received = bytearray(early)
    more = asyncio.Event()

    class Collect(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            received.extend(data)
            more.set()

    transport.set_protocol(Collect())
    transport.write(b"ping")
    try:
        while len(received) < expect:
            await asyncio.wait_for(more.wait(), 5)
            more.clear()
    finally:
        transport.close()
    return bytes(received)


async def test_a_connect_answer_dripped_a_byte_at_a_time_with_the_targets_bytes_behind_it() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"CONNECT shop.example:80 HTTP/1.1\r\n")
        await drip(writer, b"HTTP/1.1 200 Connection established\r\nProxy-Agent: x\r\n\r\n")
        writer.write(b"hello")  # a server that speaks first
        await reader.readexactly(4)
        writer.write(b"pong")
        await writer.drain()

    async with scripted_proxy(script) as port:
        assert await tunnel("http", port, expect=9) == b"hellopong"  # not a byte lost


async def test_a_socks5_answer_dripped_with_a_name_as_its_bound_address() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readexactly(3) == b"\x05\x01\x02"
        await drip(writer, b"\x05\x02")
        user, password = b"sam", b"secret"
        login = b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password
        assert await reader.readexactly(len(login)) == login
        await drip(writer, b"\x01\x00")
        request = await reader.readexactly(10)  # the checked IPv4 address, not the name
        assert request == b"\x05\x01\x00\x01" + bytes([192, 0, 2, 7]) + struct.pack("!H", 80)
        bound = b"relay.example"
        await drip(writer, b"\x05\x00\x00\x03" + bytes([len(bound)]) + bound + b"\x1f\x90")
        await reader.readexactly(4)
        writer.write(b"pong")
        await writer.drain()

    async with scripted_proxy(script) as port:
        assert await tunnel("socks5", port, "sam:secret") == b"pong"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"HTTP/1.1 200 Connec", "could not connect"),  # cut off before the answer's end
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 20_000, "could not connect"),  # no end in sight
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not HTTP"),
        (b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", "credentials"),
    ],
)
async def test_a_broken_connect_answer_is_the_proxys_failure(answer: bytes, reason: str) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()

    async with scripted_proxy(script) as port:
        with pytest.raises(ProxyFailed, match=reason) as failed:
            await tunnel("http", port)
    assert failed.value.target is None  # its own failure: benched at once


async def test_a_5xx_to_connect_names_the_target_it_could_not_reach() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with scripted_proxy(script) as port:
        with pytest.raises(ProxyFailed) as failed:
            await tunnel("http", port)
    assert (failed.value.status, failed.value.target) == (504, "shop.example:80")


async def test_no_answer_to_connect_in_time_names_the_target_it_waited_for() -> None:
    """A proxy that took our CONNECT and says nothing may be waiting for a target that drops
    packets; one that cannot be connected to at all is at fault by itself."""
    answered = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.wait_for(answered.wait(), 5)

    route = ProxyRoute(parse_proxy_url(f"http://127.0.0.1:{closed_port()}"), "p")
    async with scripted_proxy(script) as port:
        silent = ProxyRoute(parse_proxy_url(f"http://127.0.0.1:{port}"), "p")
        with pytest.raises(ProxyFailed, match="no answer to CONNECT") as failed:
            await open_tunnel(silent, ["127.0.0.1"], "shop.example", 80, ["192.0.2.7"], 0.3)
        answered.set()
    assert failed.value.target == "shop.example:80"
    with pytest.raises(ProxyFailed, match="could not connect") as refused:
        await open_tunnel(route, ["127.0.0.1"], "shop.example", 80, ["192.0.2.7"], 0.3)
    assert refused.value.target is None

"""A raw-socket HTTP server that sends bodies as the web does: in random pieces with random
pauses, framed by Content-Length, chunked, or the connection's close, compressed or not."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import random
import zlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, TypeVar
from urllib.parse import urlsplit

import brotli  # no stubs (pyproject: ignore_missing_imports); used here to send `br`

Framing = Literal["length", "chunked", "close"]
Coding = Literal["identity", "gzip", "deflate", "br"]
FRAMINGS: tuple[Framing, ...] = ("length", "chunked", "close")
CODINGS: tuple[Coding, ...] = ("identity", "gzip", "deflate", "br")
REASONS = {200: "OK", 404: "Not Found"}


@dataclass(frozen=True)
class Reply:
    """What one route answers. `declared_length` overrides Content-Length (a lying server);
    `as_is` sends `body` unencoded under its `coding` label (a broken stream); `stall_s` holds
    the body's end back that long (or until the client hangs up)."""

    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    framing: Framing = "length"
    coding: Coding = "identity"
    status: int = 200
    declared_length: int | None = None
    as_is: bool = False
    stall_s: float = 0.0


NOT_FOUND = Reply(b"not found", status=404)


def encode(body: bytes, coding: Coding) -> bytes:
    """`body` as sent with Content-Encoding `coding` (deflate is the zlib format, RFC 9110)."""
    if coding == "gzip":
        return gzip.compress(body, compresslevel=5)
    if coding == "deflate":
        return zlib.compress(body, 5)
    if coding == "br":
        return bytes(brotli.compress(body, quality=4))
    return body


@dataclass
class DripServer:
    """Serves `routes` on a loopback port; each answer's pieces and pauses come from a random
    generator seeded with (`seed`, path, hit number), so a failure replays the same way."""

    seed: int
    max_piece: int = 16 * 1024
    max_pause_s: float = 0.004
    routes: dict[str, Reply] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    base_url: str = ""
    connections: dict[asyncio.StreamWriter, asyncio.Task[None]] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return self.base_url + path

    def add(self, path: str, reply: Reply) -> str:
        """Serve `reply` at `path`; returns its URL."""
        self.routes[path] = reply
        return self.url(path)

    def _pieces(self, data: bytes, rng: random.Random) -> list[bytes]:
        pieces, start = [], 0
        while start < len(data):
            # Mostly small pieces, some large: what a slow origin or a proxy hands on.
            size = rng.randint(1, self.max_piece if rng.random() < 0.7 else 8 * self.max_piece)
            pieces.append(data[start : start + size])
            start += size
        return pieces

    async def _pause(self, rng: random.Random) -> None:
        await asyncio.sleep(rng.uniform(0, self.max_pause_s) if rng.random() < 0.3 else 0)

    def _head(self, reply: Reply, data: bytes) -> bytes:
        version = "HTTP/1.0" if reply.framing == "close" else "HTTP/1.1"
        head = [f"{version} {reply.status} {REASONS.get(reply.status, 'Other')}"]
        head.append(f"Content-Type: {reply.content_type}")
        if reply.coding != "identity":
            head.append(f"Content-Encoding: {reply.coding}")
        if reply.framing == "length":
            head.append(f"Content-Length: {reply.declared_length or len(data)}")
        elif reply.framing == "chunked":
            head.append("Transfer-Encoding: chunked")
        else:
            head.append("Connection: close")
        return ("\r\n".join(head) + "\r\n\r\n").encode()

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str, path: str
    ) -> bool:
        """Send the answer for `path`; True when the connection may carry another request."""
        reply = self.routes.get(path, NOT_FOUND)
        rng = random.Random(f"{self.seed}:{path}:{self.hits[path]}")
        self.hits[path] += 1
        data = reply.body if reply.as_is else encode(reply.body, reply.coding)
        writer.write(self._head(reply, data))
        if method != "HEAD":
            await self._send_body(writer, data, reply, rng)
            if reply.stall_s:  # the client may hang up meanwhile: then it is over
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reader.read(), reply.stall_s)
                if reader.at_eof():
                    return False
            if reply.framing == "chunked":
                writer.write(b"0\r\n\r\n")
        await writer.drain()
        lying = reply.declared_length is not None and reply.declared_length != len(data)
        return reply.framing != "close" and not lying

    async def _send_body(
        self, writer: asyncio.StreamWriter, data: bytes, reply: Reply, rng: random.Random
    ) -> None:
        for piece in self._pieces(data, rng):
            if reply.framing == "chunked":
                writer.write(f"{len(piece):x}\r\n".encode())
                if rng.random() < 0.2:  # a chunk's size line and its data apart
                    await writer.drain()
                    await self._pause(rng)
                piece += b"\r\n"
            writer.write(piece)
            await writer.drain()
            await self._pause(rng)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: requests one after another (keep-alive) until a close."""
        task = asyncio.current_task()
        assert task is not None
        self.connections[writer] = task
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                request_line, *lines = head.split("\r\n")
                method, target, _ = request_line.split(" ", 2)
                fields = dict(line.split(":", 1) for line in lines if ":" in line)
                sized = {name.lower(): value for name, value in fields.items()}
                if length := int(sized.get("content-length", "0")):
                    await reader.readexactly(length)
                path = urlsplit(target).path
                keep = await self._answer(reader, writer, method, path)
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client hung up (it may stop reading at its cap)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 5)
            self.connections.pop(writer, None)


D = TypeVar("D", bound=DripServer)


@contextlib.asynccontextmanager
async def serve_drip(server: D) -> AsyncIterator[D]:
    """`server` (a DripServer, or a subclass) on a free loopback port, for the block."""
    tcp = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    server.base_url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        tcp.close()
        for writer in server.connections:  # idle keep-alive connections: their handlers end
            writer.close()
        if server.connections:
            await asyncio.wait(list(server.connections.values()), timeout=10)
        await tcp.wait_closed()


def start_drip_server(
    seed: int, max_piece: int = 16 * 1024, max_pause_s: float = 0.004
) -> contextlib.AbstractAsyncContextManager[DripServer]:
    """A DripServer on a free loopback port, for the duration of the block."""
    return serve_drip(DripServer(seed=seed, max_piece=max_piece, max_pause_s=max_pause_s))

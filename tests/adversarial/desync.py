"""A desync-prone upstream on loopback: what request smuggling needs from a server.

It keeps connections alive, frames request bodies by Transfer-Encoding before Content-Length
(as RFC 9112 says, but believing a `chunked` it finds in any casing or with spaces around),
reads pipelined requests, and answers in lockstep: one answer for each read that completes a
request, oldest first. A request that arrives right behind another (pipelined, or smuggled in
its body) is answered when the next read comes in, i.e. to whoever sends next on that
connection. Each answer is JSON echoing the request line and the Authorization header.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

MAX_HEAD = 64 * 1024


@dataclass
class Request:
    """One request as the upstream framed it."""

    line: str
    headers: list[tuple[str, str]]
    body: bytes
    connection: int

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.strip().lower() == name), None)


@dataclass
class Upstream:
    """The running server: its base URL and every request it framed, in order."""

    base_url: str
    requests: list[Request] = field(default_factory=list)
    connections: int = 0

    def lines(self) -> list[str]:
        return [r.line for r in self.requests]


class _Incomplete(Exception):
    pass


def _chunked(data: bytes, start: int) -> tuple[bytes, int]:
    body, pos = b"", start
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            raise _Incomplete
        size = int(data[pos:end].split(b";")[0].strip() or b"0", 16)
        pos = end + 2
        if size == 0:
            if data[pos : pos + 2] != b"\r\n":
                raise _Incomplete
            return body, pos + 2
        if len(data) < pos + size + 2:
            raise _Incomplete
        body += data[pos : pos + size]
        pos += size + 2


def parse_one(data: bytes, connection: int) -> tuple[Request, int]:
    """The first request in `data` and where it ends; _Incomplete if it is not all there."""
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        raise _Incomplete
    lines = data[:head_end].decode("latin-1").split("\r\n")
    headers = [(k, v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    request = Request(lines[0], headers, b"", connection)
    start = head_end + 4
    te = request.header("transfer-encoding")
    if te is not None and "chunked" in te.lower():
        request.body, end = _chunked(data, start)
        return request, end
    length = int(request.header("content-length") or 0)
    if len(data) < start + length:
        raise _Incomplete
    request.body = data[start : start + length]
    return request, start + length


def _answer(request: Request) -> bytes:
    body = json.dumps(
        {"request_line": request.line, "authorization": request.header("authorization")}
    ).encode()
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


async def _serve(
    upstream: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    upstream.connections += 1
    number, buffer, pending = upstream.connections, b"", []
    try:
        while chunk := await reader.read(65536):
            buffer += chunk
            completed = 0
            while buffer:
                try:
                    request, end = parse_one(buffer, number)
                except _Incomplete:
                    break
                buffer = buffer[end:]
                upstream.requests.append(request)
                pending.append(_answer(request))
                completed += 1
            if completed and pending:  # lockstep: one answer per read that completed one
                writer.write(pending.pop(0))
                await writer.drain()
            if len(buffer) > MAX_HEAD:
                break
    except (ConnectionError, ValueError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def desync_upstream() -> AsyncIterator[Upstream]:
    """Serve the upstream on a free loopback port."""
    upstream = Upstream(base_url="")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve(upstream, reader, writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    upstream.base_url = f"http://127.0.0.1:{port}"
    try:
        yield upstream
    finally:
        server.close()
        await server.wait_closed()

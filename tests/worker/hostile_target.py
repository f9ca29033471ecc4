"""A raw-socket target that answers each request with a token taken from the request's path,
honestly or with framing tricks, and records which tokens each connection carried.

`GET /<mode>/<token>` is answered `token=<token>` (text/plain), kept alive, in the mode:
- `plain`: Content-Length.
- `clte`: Content-Length AND Transfer-Encoding: chunked; a client that believed the length
  would find a second response (`stolen=<token>`) in the chunk's data.
- `extra`: a second, unasked-for response (`stolen=<token>`) right behind the first, same write.
- `late`: the same second response, but 30 ms later (the first one's connection is idle by then).
- `junk`: bytes that are no HTTP at all (`<token>-junk`), 30 ms after the answer.
Whatever a client keeps of a connection's leftovers carries the token of the request that
caused them: if a later request (another job, another owner) reads them, its result shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

MODES = ("plain", "clte", "extra", "late", "junk")
LATE_S = 0.03


def _response(body: bytes, *extra_headers: str) -> bytes:
    head = ["HTTP/1.1 200 OK", "Content-Type: text/plain", *extra_headers]
    if not any(
        h.lower().startswith(("content-length", "transfer-encoding")) for h in extra_headers
    ):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def answer(mode: str, token: str) -> tuple[bytes, bytes]:
    """What to send at once, and what to send LATE_S later."""
    body = f"token={token}".encode()
    stolen = _response(f"stolen={token}".encode())
    if mode == "clte":
        data = body + stolen
        chunked = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"
        return _response(chunked, f"Content-Length: {len(body)}", "Transfer-Encoding: chunked"), b""
    if mode == "extra":
        return _response(body) + stolen, b""
    if mode == "late":
        return _response(body), stolen
    if mode == "junk":
        return _response(body), f"{token}-junk\r\n\r\n".encode()
    return _response(body), b""


@dataclass
class HostileTarget:
    """The running target: its base URL and, per connection, the tokens it was asked for."""

    base_url: str = ""
    connections: dict[int, list[str]] = field(default_factory=dict)
    peers: set[str] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def url(self, mode: str, token: str) -> str:
        return f"{self.base_url}/{mode}/{token}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        number = len(self.connections)
        self.connections[number] = tokens = []
        self.peers.add(writer.get_extra_info("peername")[0])
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode("latin-1")
                mode, _, token = target.strip("/").partition("/")
                tokens.append(token)
                now, later = answer(mode, token)
                writer.write(now)
                await writer.drain()
                if later:
                    await asyncio.sleep(LATE_S)
                    writer.write(later)
                    await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # the client hung up (or closed a connection it would not trust)
        finally:
            writer.close()
            self.tasks.discard(task)


@contextlib.asynccontextmanager
async def hostile_target() -> AsyncIterator[HostileTarget]:
    """A HostileTarget on a free port of 127.0.0.1, for the duration of the block."""
    target = HostileTarget()
    server = await asyncio.start_server(target.serve, "127.0.0.1", 0)
    target.base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield target
    finally:
        server.close()
        for task in list(target.tasks):
            task.cancel()
        if target.tasks:
            await asyncio.wait(list(target.tasks), timeout=10)
        await server.wait_closed()

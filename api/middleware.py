"""The API's ASGI edge: request id, body size limit (413 before any parsing), HTTP metrics."""

from __future__ import annotations

import itertools
import json
import secrets
import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import HttpSeries
from shared.errors import PayloadTooLarge


async def _send_error(send: Send, status: int, body: dict[str, object]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


BODYLESS = frozenset({"GET", "HEAD", "OPTIONS"})
_ID_PREFIX = secrets.token_hex(8)  # this process's; a counter makes each id unique in it
_ids = itertools.count()


def new_request_id() -> str:
    """32 hex digits, unique across processes (uuid4 would cost a getrandom call each)."""
    return f"{_ID_PREFIX}{next(_ids) & 0xFFFFFFFFFFFFFFFF:016x}"


class EdgeMiddleware:
    """The one ASGI layer in front of the app, for every HTTP request:

    - a request id, bound to the logs and echoed as `X-Request-ID`;
    - a body over `max_bytes` refused with 413, by header or by counting, before the app
      parses anything (the body is buffered: FastAPI would buffer it anyway);
    - the request counted and timed by route template (`api.metrics.HttpSeries`), whatever
      the answer, 413s included.

    One layer rather than one per concern: each layer costs every request a coroutine and a
    `send` wrapper of its own."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.series = HttpSeries()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before it answers
        request_id = new_request_id()
        id_header = (b"x-request-id", request_id.encode())
        structlog.contextvars.bind_contextvars(request_id=request_id)

        async def send_tagged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), id_header]}
            await send(message)

        try:
            if scope["method"] in BODYLESS:
                await self.app(scope, receive, send_tagged)
            else:
                body = await self._body(scope, receive, send_tagged)
                if body is not None:
                    await self.app(scope, _replay(body, receive), send_tagged)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
            self.series.observe(scope, status, time.perf_counter() - started)

    async def _body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body; None if it was refused (413 sent) or the client went away."""
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_bytes + 1
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _refuse(self, send: Send) -> None:
        too_large = PayloadTooLarge(f"The body exceeds {self.max_bytes} bytes.")
        await _send_error(send, 413, too_large.body())


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` for the app: the buffered body once, then the client's own messages."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay

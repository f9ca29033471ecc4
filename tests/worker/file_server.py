"""A loopback server of fixed bodies by name, counting requests (documents, structured pages)."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from tests.helpers import serve_aiohttp


@dataclass
class FileServer:
    files: dict[str, tuple[bytes, str]]
    base: str = ""
    hits: Counter[str] = field(default_factory=Counter)

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"


@contextlib.asynccontextmanager
async def serve(files: dict[str, tuple[bytes, str]]) -> AsyncIterator[FileServer]:
    server = FileServer(files)

    async def handle(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        server.hits[name] += 1
        if name not in server.files:
            raise web.HTTPNotFound()
        body, content_type = server.files[name]
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/{name}", handle)
    async with serve_aiohttp(app) as url:
        server.base = url
        yield server

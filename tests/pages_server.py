"""A loopback web site for `fetch` tests: real pages, odd encodings, bombs, redirects."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import zlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from tests.helpers import serve_aiohttp

PAGES = Path(__file__).parent / "fixtures" / "pages"
MIB = 1024 * 1024
RUSSIAN = (
    "Городской совет утвердил строительство новой набережной. Работы начнутся весной и "
    "продлятся три года. Жители района давно просили защитить дома от наводнений, которые "
    "случаются почти каждую осень. Мэр города сказал, что это самый важный проект десятилетия."
)
FRENCH = (
    "Le conseil municipal a approuvé la construction d'une digue le long de la rivière. Les "
    "travaux commenceront à l'été et dureront trois ans. « C'est un grand jour pour le quartier "
    "», a déclaré la maire, très émue, devant les habitants réunis à la mairie."
)


@functools.cache
def gzip_bomb(inflated_mb: int) -> bytes:
    """A gzip stream of `inflated_mb` MiB of spaces: about a thousandth of that on the wire."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip container
    block = b" " * MIB
    parts = [packer.compress(block) for _ in range(inflated_mb)]
    return b"".join(parts) + packer.flush()


def html_page(title: str, body: str, head: str = "") -> str:
    return (
        f"<!doctype html><html><head><title>{title}</title>{head}</head><body>{body}</body></html>"
    )


@dataclass
class PagesServer:
    """Routes (GET):

    /pages/{name}           a fixture from tests/fixtures/pages (text/html; charset=utf-8)
    /chain/{n}              302 to /chain/{n-1}; /chain/0 serves the news article
    /to?url=U               302 to U
    /gzip-bomb?mb=N         N MiB of spaces, gzip-encoded (a few KiB on the wire)
    /huge?mb=N[&declare=1]  N MiB of HTML, streamed (with a Content-Length if declare=1)
    /pdf, /image            a PDF and a PNG
    /latin1, /cp1251        pages with no charset in the header (meta only / none at all)
    /json, /plain           JSON, text/plain
    `untyped_url`           (another port) HTML without a Content-Type header
    /slow?s=N               HTML after N seconds
    /status/{code}          that status (Retry-After: 1 on 429/503)
    """

    base_url: str = ""
    untyped_url: str = ""
    hits: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)  # body bytes written per path

    def url(self, path: str) -> str:
        return self.base_url + path


def _app(server: PagesServer) -> web.Application:
    routes = web.RouteTableDef()

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        server.hits[request.path] += 1
        return await handler(request)

    @routes.get("/pages/{name}")
    async def page(request: web.Request) -> web.Response:
        path = PAGES / f"{request.match_info['name']}.html"
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=path.read_bytes(), content_type="text/html", charset="utf-8")

    @routes.get("/chain/{n}")
    async def chain(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n <= 0:
            body = (PAGES / "news_article.html").read_bytes()
            return web.Response(body=body, content_type="text/html", charset="utf-8")
        raise web.HTTPFound(f"/chain/{n - 1}")

    @routes.get("/to")
    async def to(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["url"])

    @routes.get("/gzip-bomb")
    async def bomb(request: web.Request) -> web.Response:
        body = gzip_bomb(int(request.query.get("mb", "64")))
        server.sent[request.path] += len(body)
        headers = {"Content-Encoding": "gzip", "Content-Type": "text/html"}
        return web.Response(body=body, headers=headers)

    @routes.get("/huge")
    async def huge(request: web.Request) -> web.StreamResponse:
        size = int(request.query.get("mb", "32")) * MIB
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        if request.query.get("declare"):
            response.content_length = size
        await response.prepare(request)
        chunk = b"<p>" + b"x" * (64 * 1024 - 7) + b"</p>\n"
        with contextlib.suppress(ConnectionError):
            while server.sent[request.path] < size:
                await response.write(chunk)
                server.sent[request.path] += len(chunk)
        return response

    @routes.get("/pdf")
    async def pdf(request: web.Request) -> web.Response:
        return web.Response(body=b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", content_type="application/pdf")

    @routes.get("/image")
    async def image(request: web.Request) -> web.Response:
        return web.Response(body=b"\x89PNG\r\n\x1a\n" + bytes(64), content_type="image/png")

    @routes.get("/latin1")
    async def latin1(request: web.Request) -> web.Response:
        page = html_page("Digue", f"<p>{FRENCH}</p>", '<meta charset="iso-8859-1">')
        return web.Response(body=page.encode("latin-1"), headers={"Content-Type": "text/html"})

    @routes.get("/cp1251")
    async def cp1251(request: web.Request) -> web.Response:
        page = html_page("Набережная", f"<article><p>{RUSSIAN}</p><p>{RUSSIAN}</p></article>")
        return web.Response(body=page.encode("cp1251"), headers={"Content-Type": "text/html"})

    @routes.get("/json")
    async def json_doc(request: web.Request) -> web.Response:
        return web.json_response({"name": "Outrider", "tags": ["a", "b"]})

    @routes.get("/plain")
    async def plain(request: web.Request) -> web.Response:
        return web.Response(text="Just some text.\nTwo lines.")

    @routes.get("/slow")
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "5")))
        return web.Response(text=html_page("Slow", "<p>finally</p>"), content_type="text/html")

    @routes.get("/status/{code}")
    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        headers = {"Retry-After": "1"} if code in (429, 503) else {}
        return web.Response(status=code, text="status", headers=headers)

    app = web.Application(middlewares=[count])
    app.add_routes(routes)
    return app


@contextlib.asynccontextmanager
async def start_pages_server(host: str = "127.0.0.1") -> AsyncIterator[PagesServer]:
    """Serve the pages on a free port of `host`; handlers stop when the client hangs up."""
    server = PagesServer()
    async with serve_aiohttp(_app(server), host, handler_cancellation=True) as url:
        server.base_url = url
        raw = await asyncio.start_server(_untyped, host, 0)
        server.untyped_url = f"http://{host}:{raw.sockets[0].getsockname()[1]}/untyped"
        try:
            yield server
        finally:
            raw.close()
            await raw.wait_closed()


async def _untyped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """aiohttp's server always sends a Content-Type, so this one speaks HTTP by hand."""
    with contextlib.suppress(ConnectionError):
        await reader.readuntil(b"\r\n\r\n")
        body = html_page("Untyped", "<p>No content type here.</p>").encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        writer.write(head.encode() + body)
        await writer.drain()
    writer.close()

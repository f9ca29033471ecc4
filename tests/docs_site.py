"""A real documentation site nobody here wrote (Debian's Django manual), served on loopback
with a robots.txt that disallows a section and a sitemap of every page; and a plain
breadth-first search over it, to compare a crawl with."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import lxml.html
from aiohttp import web

from tests.helpers import serve_aiohttp

DJANGO = Path("/usr/share/doc/python-django-doc/html")
DISALLOWED = "/internals/"


@dataclass
class DocsSite:
    root: Path
    disallow: str = DISALLOWED
    base_url: str = ""
    hits: Counter[str] = field(default_factory=Counter)

    def file_of(self, path: str) -> Path | None:
        path = unquote(path)
        target = (self.root / path.lstrip("/")).resolve()
        if path.endswith("/"):
            target = target / "index.html"
        if not target.is_relative_to(self.root.resolve()) or not target.is_file():
            return None
        return target

    def links(self, path: str) -> list[str]:
        """The same-host http links of a page, absolute, fragments dropped (what a plain
        crawler follows)."""
        file = self.file_of(path)
        if file is None or file.suffix != ".html":
            return []
        tree = lxml.html.fromstring(file.read_bytes())
        base = self.base_url + path
        found = []
        for element in tree.iter("a"):
            href = element.get("href")
            if not href:
                continue
            parts = urlsplit(urljoin(base, href.strip()))
            if parts.scheme in ("http", "https") and parts.netloc == urlsplit(base).netloc:
                found.append(urlunsplit(parts._replace(fragment="")))
        return found

    def bfs(self, max_depth: int) -> dict[str, int]:
        """Paths a breadth-first search from `/index.html` reaches within `max_depth` links,
        robots.txt obeyed, with their depth (only pages that exist)."""
        start = "/index.html"
        depths = {start: 0}
        queue = deque([start])
        while queue:
            path = queue.popleft()
            if depths[path] == max_depth:
                continue
            for url in self.links(path):
                link = urlsplit(url).path
                if link in depths or link.startswith(self.disallow) or self.file_of(link) is None:
                    continue
                depths[link] = depths[path] + 1
                queue.append(link)
        return depths

    def sitemap(self) -> bytes:
        pages = sorted(p.relative_to(self.root) for p in self.root.rglob("*.html"))
        body = "".join(f"<url><loc>{self.base_url}/{p}</loc></url>" for p in pages)
        xmlns = "http://www.sitemaps.org/schemas/sitemap/0.9"
        return f'<?xml version="1.0"?><urlset xmlns="{xmlns}">{body}</urlset>'.encode()


def app(site: DocsSite) -> web.Application:
    async def serve(request: web.Request) -> web.StreamResponse:
        site.hits[request.path] += 1
        if request.path == "/robots.txt":
            sitemap = f"{site.base_url}/sitemap.xml"
            text = f"User-agent: *\nDisallow: {site.disallow}\nSitemap: {sitemap}\n"
            return web.Response(text=text)
        if request.path == "/sitemap.xml":
            return web.Response(body=site.sitemap(), content_type="application/xml")
        file = site.file_of(request.path)
        if file is None:
            raise web.HTTPNotFound()
        data = await asyncio.to_thread(file.read_bytes)
        kind = "text/html" if file.suffix == ".html" else "application/octet-stream"
        return web.Response(body=data, content_type=kind)

    application = web.Application()
    application.router.add_get("/{tail:.*}", serve)
    return application


@contextlib.asynccontextmanager
async def serve_docs(root: Path = DJANGO, disallow: str = DISALLOWED) -> AsyncIterator[DocsSite]:
    site = DocsSite(root=root, disallow=disallow)
    async with serve_aiohttp(app(site), handler_cancellation=True) as url:
        site.base_url = url
        yield site

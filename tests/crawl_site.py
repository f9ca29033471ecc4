"""A generated site for crawl tests and benchmarks, served on loopback.

`/` links to `/docs/0`; `/docs/{i}` links to its two children `/docs/{2i+1}` and `/docs/{2i+2}`
(a binary tree of `pages` documents), to `/private/{i}` (robots.txt disallows `/private/`), to
an external host, to its parent spelled differently (`/docs/./{p}`, a `%`-escaped digit, an
uppercase scheme and host, a fragment) and to `/old/{i}`, which redirects to `/docs/{i}`.
robots.txt names `/sitemap.xml`, an index of a gzipped sitemap of every document and a plain
one of `/extra/{k}` pages that nothing links to. Every request is counted by path.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from tests.helpers import serve_aiohttp

EXTRA_PAGES = 5


@dataclass
class CrawlSite:
    """The site's shape and what was asked of it."""

    pages: int
    base_url: str = ""
    hits: Counter[str] = field(default_factory=Counter)
    delay_s: float = 0.0  # each document answers this late (to catch a crawl mid-flight)
    in_flight: int = 0
    peak_in_flight: int = 0  # the most requests the site was answering at once

    def children(self, i: int) -> list[int]:
        return [c for c in (2 * i + 1, 2 * i + 2) if c < self.pages]

    def links(self, path: str) -> list[str]:
        """The site paths a page links to (canonical spellings; redirects resolved)."""
        if path == "/":
            return ["/docs/0"]
        if path.startswith("/docs/"):
            i = int(path.rsplit("/", 1)[1])
            parent = [f"/docs/{(i - 1) // 2}"] if i else ["/"]
            return [*(f"/docs/{c}" for c in self.children(i)), *parent]
        return []

    def bfs(self, max_depth: int) -> dict[str, int]:
        """Every canonical path a breadth-first search from `/` reaches, with its depth."""
        depths = {"/": 0}
        queue = deque(["/"])
        while queue:
            path = queue.popleft()
            if depths[path] == max_depth:
                continue
            for link in self.links(path):
                if link not in depths:
                    depths[link] = depths[path] + 1
                    queue.append(link)
        return depths

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def page(self, i: int) -> str:
        parent = (i - 1) // 2
        host = "HTTP://" + self.base_url.removeprefix("http://").upper()
        spelled = [
            f'<a href="/docs/./{parent}">up</a>',
            f'<a href="{host}/docs/{parent}#top">up again</a>',
            f'<a href="/docs/%{ord(str(parent)[0]):02x}{str(parent)[1:]}">escaped</a>',
        ]
        kids = "".join(f'<li><a href="/docs/{c}">Doc {c}</a></li>' for c in self.children(i))
        old = "".join(f'<a href="/old/{c}">old {c}</a>' for c in self.children(i))
        return (
            f"<html><head><title>Doc {i}</title></head><body><h1>Document {i}</h1>"
            f"<p>This is document number {i} of the generated site. It has a paragraph of text "
            f"long enough to count as main content for the extractor, about nothing at all, "
            f"written so that every page differs: page {i}.</p><ul>{kids}</ul>{old}"
            + ("".join(spelled) if i else '<a href="/">home</a>')
            + f'<a href="/private/{i}">private</a><a href="http://external.invalid/x">ext</a>'
            "</body></html>"
        )


def _sitemap(urls: list[str]) -> bytes:
    body = "".join(f"<url><loc>{u}</loc><lastmod>2026-01-01</lastmod></url>" for u in urls)
    xmlns = "http://www.sitemaps.org/schemas/sitemap/0.9"
    return f'<?xml version="1.0"?><urlset xmlns="{xmlns}">{body}</urlset>'.encode()


def app(site: CrawlSite) -> web.Application:
    async def count(request: web.Request, handler: object) -> web.StreamResponse:
        site.hits[request.path] += 1
        site.in_flight += 1
        site.peak_in_flight = max(site.peak_in_flight, site.in_flight)
        try:
            return await handler(request)  # type: ignore[operator, no-any-return]
        finally:
            site.in_flight -= 1

    async def home(_: web.Request) -> web.Response:
        body = '<html><body><h1>Home</h1><a href="/docs/0">Docs</a></body></html>'
        return web.Response(text=body, content_type="text/html")

    async def doc(request: web.Request) -> web.Response:
        i = int(request.match_info["i"])
        if i >= site.pages:
            raise web.HTTPNotFound()
        if site.delay_s:
            await asyncio.sleep(site.delay_s)
        return web.Response(text=site.page(i), content_type="text/html")

    async def old(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(f"/docs/{request.match_info['i']}")

    async def private(_: web.Request) -> web.Response:
        return web.Response(text="<h1>secret</h1>", content_type="text/html")

    async def extra(request: web.Request) -> web.Response:
        return web.Response(
            text=f"<h1>Extra {request.match_info['k']}</h1>", content_type="text/html"
        )

    async def robots(_: web.Request) -> web.Response:
        return web.Response(
            text=f"User-agent: *\nDisallow: /private/\nSitemap: {site.url('/sitemap.xml')}\n"
        )

    async def index(_: web.Request) -> web.Response:
        xmlns = "http://www.sitemaps.org/schemas/sitemap/0.9"
        maps = "".join(
            f"<sitemap><loc>{site.url(p)}</loc></sitemap>"
            for p in ("/sitemap-docs.xml.gz", "/sitemap-extra.xml")
        )
        body = f'<?xml version="1.0"?><sitemapindex xmlns="{xmlns}">{maps}</sitemapindex>'
        return web.Response(text=body, content_type="application/xml")

    async def docs_map(_: web.Request) -> web.Response:
        data = gzip.compress(_sitemap([site.url(f"/docs/{i}") for i in range(site.pages)]))
        return web.Response(body=data, content_type="application/gzip")

    async def extra_map(_: web.Request) -> web.Response:
        urls = [site.url(f"/extra/{k}") for k in range(EXTRA_PAGES)]
        return web.Response(body=_sitemap(urls), content_type="application/xml")

    application = web.Application(middlewares=[web.middleware(count)])
    application.router.add_get("/", home)
    application.router.add_get("/docs/{i:\\d+}", doc)
    application.router.add_get("/old/{i:\\d+}", old)
    application.router.add_get("/private/{i}", private)
    application.router.add_get("/extra/{k}", extra)
    application.router.add_get("/robots.txt", robots)
    application.router.add_get("/sitemap.xml", index)
    application.router.add_get("/sitemap-docs.xml.gz", docs_map)
    application.router.add_get("/sitemap-extra.xml", extra_map)
    return application


@contextlib.asynccontextmanager
async def serve_site(pages: int, delay_s: float = 0.0) -> AsyncIterator[CrawlSite]:
    """The site on a loopback port for the block's duration."""
    site = CrawlSite(pages=pages, delay_s=delay_s)
    async with serve_aiohttp(app(site), handler_cancellation=True) as url:
        site.base_url = url
        yield site

"""Sitemaps (sitemaps.org): the URLs a site lists, for `crawl` seeds and `map`.

Where: the `Sitemap:` lines of the origin's robots.txt (through the shared robots.txt cache),
and `/sitemap.xml`. Sitemap indexes are followed, breadth first, gzip included. Bounded: at
most `crawl_sitemap_max_files` files and `crawl_sitemap_max_urls` URLs; each body is read to its
end or to `crawl_sitemap_max_bytes` (decompressed, gzip inflated in bounded steps), and what
the cap cut is dropped. XML is parsed by lxml with entities, DTDs and the network off, in a
thread. Every request goes through the owner's egress-guarded session; a sitemap that fails
(status, timeout, bad XML) is skipped, not fatal.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp
from lxml import etree
from protego import Protego

from shared.errors import EgressBlocked
from shared.logging import describe, get_logger
from shared.settings import Settings
from worker.bodies import read_capped
from worker.robots import RobotsCache, robots_url

log = get_logger(__name__)

FETCH_TIMEOUT_S = 20.0
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class SitemapEntry:
    """A page URL a sitemap lists, with its `lastmod` if given, and the sitemap's URL."""

    url: str
    lastmod: str | None
    sitemap: str


def _gunzip(data: bytes, cap: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        return inflater.decompress(data, cap)  # at most `cap` bytes out: a bomb stays small
    except zlib.error:
        return b""


def _localname(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def parse_sitemap(data: bytes) -> tuple[list[tuple[str, str | None]], list[str]]:
    """(page URLs with lastmod, sitemap URLs) of a sitemap or sitemap index; nothing if it
    is not XML. No entities, no DTD, no network."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, recover=True
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return [], []
    if root is None:
        return [], []
    pages: list[tuple[str, str | None]] = []
    nested: list[str] = []
    for element in root:
        name = _localname(element.tag)
        if name not in ("url", "sitemap"):
            continue
        fields = {_localname(child.tag): (child.text or "").strip() for child in element}
        loc = fields.get("loc")
        if not loc:
            continue
        if name == "sitemap":
            nested.append(loc)
        else:
            pages.append((loc, fields.get("lastmod") or None))
    return pages, nested


class SitemapReader:
    """Reads the sitemaps of one site through one owner's session."""

    def __init__(self, http: aiohttp.ClientSession, settings: Settings, headers: dict[str, str]):
        self.http = http
        self.settings = settings
        self.headers = headers

    async def _fetch(self, url: str) -> bytes | None:
        cap = self.settings.crawl_sitemap_max_bytes
        try:
            async with self.http.get(
                url, headers=self.headers, timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
            ) as response:
                if response.status != 200:
                    return None
                body = await read_capped(response, cap)
        except (aiohttp.ClientError, TimeoutError, EgressBlocked, ValueError) as exc:
            log.info("sitemap.unreadable", url=url, error=describe(exc))
            return None
        data = body.data
        if data[:2] == GZIP_MAGIC:
            data = _gunzip(data, cap)
        return data

    async def entries(self, start_url: str, from_robots: list[str]) -> list[SitemapEntry]:
        """Every page URL the site's sitemaps list, within the bounds."""
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(start_url))
        queue = deque(dict.fromkeys([*from_robots, urljoin(origin, "/sitemap.xml")]))
        seen: set[str] = set()
        found: dict[str, SitemapEntry] = {}
        max_urls = self.settings.crawl_sitemap_max_urls
        while queue and len(seen) < self.settings.crawl_sitemap_max_files:
            url = queue.popleft()
            if url in seen:
                continue
            seen.add(url)
            data = await self._fetch(url)
            if not data:
                continue
            pages, nested = await asyncio.to_thread(parse_sitemap, data)
            queue.extend(n for n in nested if n not in seen)
            for loc, lastmod in pages:
                if len(found) >= max_urls:
                    return list(found.values())
                found.setdefault(loc, SitemapEntry(loc, lastmod, url))
        return list(found.values())


async def robots_sitemaps(cache: RobotsCache, start_url: str, user_agent: str) -> list[str]:
    """The `Sitemap:` URLs of the start URL's robots.txt (none if it has no rules)."""
    robots = robots_url(start_url)
    if robots is None:
        return []
    found = await cache.get(robots, user_agent)
    if found.status != "rules":
        return []
    return list(Protego.parse(found.body).sitemaps)

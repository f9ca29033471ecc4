"""Bare baseline for `fetch` with markdown + links: one asyncio loop of aiohttp and
BeautifulSoup(lxml), a few GETs in flight, parsing on the loop as a small script would.

Per page: GET it, read the links with BeautifulSoup's lxml tree builder (absolute, fragments
dropped, http(s) only, de-duplicated, internal = same host), and the markdown of the main
content with the same trafilatura call Outrider makes (markdown, no comments, formatting and
tables kept, link targets and images left out), so both sides do the same extraction.
`--markdown markdownify` converts the page's `<article>` (else `<main>`, else `<body>`) with
markdownify instead: cheaper, but it only works because it knows where this site's content is.

No database, no queue, no egress checks, no robots.txt, no retries.

    python -m benchmarks.bare_fetch --base http://127.0.0.1:PORT --pages 500
Prints one JSON object: pages, seconds, pages_per_s, and what was extracted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp
import trafilatura

# bs4 and markdownify come from benchmarks/requirements.txt (`make bench`), not the project's
# dependencies, so the type check must also pass where they are not installed.
from bs4 import BeautifulSoup, Tag  # type: ignore[import-not-found, unused-ignore]


def links(soup: BeautifulSoup, url: str) -> dict[str, list[dict[str, str]]]:
    """The page's http(s) links, absolute and de-duplicated, split by host."""
    own = urlsplit(url).hostname
    seen: dict[str, dict[str, str]] = {}
    for anchor in soup.find_all(["a", "area"], href=True):
        href = str(anchor["href"]).strip()
        if not href or href.startswith("#"):
            continue
        parts = urlsplit(urljoin(url, href))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            continue
        absolute = urlunsplit(parts._replace(fragment=""))
        if absolute not in seen:
            seen[absolute] = {"url": absolute, "text": " ".join(anchor.get_text(" ").split())}
    split: dict[str, list[dict[str, str]]] = {"internal": [], "external": []}
    for link in seen.values():
        same = urlsplit(link["url"]).hostname == own
        split["internal" if same else "external"].append(link)
    return split


def markdown_trafilatura(html: str, url: str) -> str:
    return (
        trafilatura.extract(
            html,
            url=url,
            output_format="markdown",
            include_comments=False,
            include_formatting=True,
            include_tables=True,
            include_links=False,
            include_images=False,
        )
        or ""
    )


def markdown_markdownify(soup: BeautifulSoup) -> str:
    from markdownify import MarkdownConverter  # type: ignore[import-not-found, unused-ignore]

    for element in soup(["script", "style", "noscript"]):
        element.decompose()
    main = soup.find("article") or soup.find("main") or soup.body
    if not isinstance(main, Tag):
        return ""
    text: str = MarkdownConverter(heading_style="ATX").convert_soup(main)
    return text.strip()


def extract(html: str, url: str, converter: str) -> dict[str, Any]:
    """Links and markdown of one page."""
    soup = BeautifulSoup(html, "lxml")
    found = links(soup, url)
    if converter == "markdownify":
        markdown = markdown_markdownify(soup)
    else:
        markdown = markdown_trafilatura(html, url)
    return {"markdown": markdown, "links": found}


async def fetch_one(session: aiohttp.ClientSession, url: str, converter: str) -> dict[str, Any]:
    async with session.get(url) as response:
        response.raise_for_status()
        html = await response.text()
    return extract(html, str(response.url), converter)


async def crawl(urls: list[str], concurrency: int, converter: str) -> list[dict[str, Any]]:
    queue = list(reversed(urls))
    results: list[dict[str, Any]] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while queue:
                results.append(await fetch_one(session, queue.pop(), converter))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    site = f"{args.base}/site"
    warmup = [f"{site}/{n}" for n in range(args.warmup)]
    await crawl(warmup, args.concurrency, args.markdown)
    started = time.perf_counter()
    urls = [f"{site}/{n}" for n in range(args.pages)]
    results = await crawl(urls, args.concurrency, args.markdown)
    seconds = time.perf_counter() - started
    return {
        "pages": len(results),
        "seconds": seconds,
        "pages_per_s": len(results) / seconds,
        "markdown_chars": sum(len(r["markdown"]) for r in results) / len(results),
        "links": sum(len(r["links"]["internal"]) + len(r["links"]["external"]) for r in results)
        / len(results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", required=True)
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--markdown", choices=["trafilatura", "markdownify"], default="trafilatura")
    args = parser.parse_args()
    import uvloop  # the same event loop as Outrider's workers

    print(json.dumps(uvloop.run(main_async(args))))


if __name__ == "__main__":
    main()

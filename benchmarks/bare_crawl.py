"""Bare baseline for `crawl`: a plain Scrapy `CrawlSpider` over the generated site, with the
same concurrency as Outrider's crawl and the same trafilatura call per page.

It starts at `/site/0`, follows every link under `/site/` to `--depth` (Scrapy's DEPTH_LIMIT;
its own duplicate filter; robots.txt obeyed), and per page makes the Markdown with the very
trafilatura call Outrider makes (benchmarks/bare_fetch.py `markdown_trafilatura`) and the
links with Scrapy's LinkExtractor. No database, no queue, no egress checks, no retries across
runs, nothing durable. Scrapy comes from benchmarks/requirements.txt, never a runtime
dependency.

    python -m benchmarks.bare_crawl --base http://127.0.0.1:PORT --depth 3 --concurrency 100
Prints one JSON object: pages, seconds, pages_per_s, markdown_chars.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from scrapy.crawler import CrawlerProcess  # type: ignore[import-not-found, unused-ignore]
from scrapy.linkextractors import LinkExtractor  # type: ignore[import-not-found, unused-ignore]
from scrapy.spiders import CrawlSpider, Rule  # type: ignore[import-not-found, unused-ignore]

from benchmarks.bare_fetch import markdown_trafilatura

SEEN: dict[str, int] = {}


class SiteSpider(CrawlSpider):  # type: ignore[misc, unused-ignore]
    name = "site"
    rules = (Rule(LinkExtractor(allow=r"/site/\d+$"), callback="parse_page", follow=True),)

    def parse_start_url(self, response: Any, **kwargs: Any) -> Any:
        return self.parse_page(response)

    def parse_page(self, response: Any) -> Any:
        markdown = markdown_trafilatura(response.text, response.url)
        SEEN[response.url] = len(markdown)
        yield {"url": response.url}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    process = CrawlerProcess(
        settings={
            "LOG_ENABLED": False,
            "ROBOTSTXT_OBEY": True,
            "DEPTH_LIMIT": args.depth,
            "CONCURRENT_REQUESTS": args.concurrency,
            "CONCURRENT_REQUESTS_PER_DOMAIN": args.concurrency,
            "DOWNLOAD_DELAY": 0,
            "AUTOTHROTTLE_ENABLED": False,
            "COOKIES_ENABLED": False,
            "TELNETCONSOLE_ENABLED": False,
            "REQUEST_FINGERPRINTER_IMPLEMENTATION": "2.7",
        }
    )
    started = time.monotonic()
    process.crawl(SiteSpider, start_urls=[f"{args.base}/site/0"], allowed_domains=["127.0.0.1"])
    process.start()
    seconds = time.monotonic() - started
    pages = len(SEEN)
    chars = sum(SEEN.values()) / pages if pages else 0.0
    print(json.dumps({"pages": pages, "seconds": seconds, "pages_per_s": pages / seconds,
                      "markdown_chars": chars}))  # fmt: skip


if __name__ == "__main__":
    main()

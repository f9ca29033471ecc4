"""Extraction as a user sees it: Markdown quality, links, metadata, schemas, encodings.

The quality bar is the public article-extraction benchmark's: 4-word shingles over `\\w+` tokens,
F1 of the extracted text against a hand-made article body. The fixtures in
tests/fixtures/pages are realistic pages (navigation, cookie banner, sidebar, comments,
footer) with hand-written ground truth next to them (`*.truth.txt`).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pytest

from shared.urls import site_of
from worker.extract.charset import decode
from worker.extract.document import build_result
from worker.extract.pool import ParsePool, parse_off_loop
from worker.extract.schema import SchemaError
from worker.retry import JobError

PAGES = Path(__file__).resolve().parent.parent / "fixtures" / "pages"
FIXTURES = sorted(p.stem for p in PAGES.glob("*.html") if p.with_suffix(".truth.txt").exists())
NEWS_URL = "https://www.northfieldcourier.example/news/local/2024/03/flood-barrier-approved"
ALL_FORMATS = ["markdown", "text", "html", "raw_html", "links", "metadata"]
_TOKEN = re.compile(r"\w+")


def shingles(text: str, n: int = 4) -> Counter[tuple[str, ...]]:
    tokens = _TOKEN.findall(text)
    return Counter(tuple(tokens[i : i + n]) for i in range(max(1, len(tokens) - n + 1)))


def shingle_f1(truth: str, predicted: str) -> tuple[float, float, float]:
    """(precision, recall, F1) of predicted text against the truth, over 4-word shingles."""
    want, got = shingles(truth), shingles(predicted)
    hit = sum((want & got).values())
    precision = hit / sum(got.values()) if got else 0.0
    recall = hit / sum(want.values()) if want else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def page(name: str) -> str:
    return (PAGES / f"{name}.html").read_text(encoding="utf-8")


def build(html: str, formats: list[str], url: str = NEWS_URL, **kwargs: Any) -> dict[str, Any]:
    metadata = {"status_code": 200, "content_type": "text/html; charset=utf-8", "bytes": 1}
    metadata.update(kwargs.pop("metadata", {}))
    return build_result(
        html, url=url, formats=formats, extract=kwargs.pop("extract", None), metadata=metadata
    )


def test_the_f1_helper_tells_content_from_boilerplate() -> None:
    truth = (PAGES / "news_article.truth.txt").read_text()
    assert shingle_f1(truth, truth) == (1.0, 1.0, 1.0)
    everything = build(page("news_article"), ["html"])["html"]
    visible = " ".join(re.sub(r"<[^>]+>", " ", everything).split())
    _, recall, f1 = shingle_f1(truth, visible)
    assert recall > 0.95
    assert f1 < 0.8


@pytest.mark.parametrize("name", FIXTURES)
def test_markdown_reaches_the_quality_bar(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    truth = (PAGES / f"{name}.truth.txt").read_text()
    result = build(page(name), ["markdown", "text"])
    for fmt in ("markdown", "text"):
        precision, recall, f1 = shingle_f1(truth, result[fmt])
        with capsys.disabled():
            print(f"\n{name} {fmt}: P={precision:.3f} R={recall:.3f} F1={f1:.3f}", end="")
        assert f1 >= 0.9, (fmt, precision, recall)


def test_markdown_keeps_structure_and_drops_boilerplate() -> None:
    markdown = build(page("news_article"), ["markdown"])["markdown"]
    assert "## A long road to approval" in markdown
    assert "- £11 million of council borrowing, repaid over 40 years" in markdown
    assert "listening to us" in markdown
    for boilerplate in (
        "We use cookies",  # cookie banner
        "Accept all cookies",
        "Most read",  # sidebar
        "Get the Courier morning briefing",  # newsletter box
        "About time too",  # a reader's comment
        "All rights reserved",  # footer
        "Politics",  # navigation
        "gtag",  # script
    ):
        assert boilerplate not in markdown, boilerplate
    assert "](" not in markdown  # link text stays, targets are in `links`


def test_markdown_renders_tables_and_code() -> None:
    docs = build(page("docs_page"), ["markdown"])["markdown"]
    assert "| `max_attempts` | 5 |" in docs or "| max_attempts | 5 |" in docs
    assert "## How retries work\n" in docs  # the permalink symbol is gone
    assert "Was this page helpful" not in docs
    assert "Batching and flushing" not in docs
    blog = build(page("blog_post"), ["markdown"])["markdown"]
    assert "```" in blog
    assert "ORDER BY o.created_at DESC" in blog
    assert "pg_upgrade in link mode" in blog  # an intra-word underscore is not escaped


def test_links_are_absolute_deduplicated_and_split() -> None:
    html = """<html><head><base href="/news/"></head><body>
      <a href="local/story#comments">Story</a> <a href="local/story">Story again</a>
      <a href="https://jobs.northfieldcourier.example/">Jobs</a>
      <a href="https://WWW.northfieldcourier.example/about"><img alt="About us"></a>
      <a href="https://twitter.com/nfcourier">X</a> <a href="//cdn.other.example/x.js">cdn</a>
      <a href="#top">Top</a> <a href="javascript:void(0)">JS</a>
      <a href="mailto:desk@northfieldcourier.example">Mail</a> <a href="tel:+441">Call</a>
      <a>no href</a> <a href=" /spaced\n/path ">Spaced</a></body></html>"""
    links = build(html, ["links"])["links"]
    assert links["internal"] == [
        {"url": "https://www.northfieldcourier.example/news/local/story", "text": "Story"},
        {"url": "https://jobs.northfieldcourier.example/", "text": "Jobs"},
        {"url": "https://www.northfieldcourier.example/about", "text": "About us"},
        {"url": "https://www.northfieldcourier.example/spaced/path", "text": "Spaced"},
    ]
    assert links["external"] == [
        {"url": "https://twitter.com/nfcourier", "text": "X"},
        {"url": "https://cdn.other.example/x.js", "text": "cdn"},
    ]


def test_registrable_domains_follow_the_public_suffix_list() -> None:
    assert site_of("news.bbc.co.uk") == site_of("www.bbc.co.uk") == "bbc.co.uk"
    assert site_of("alice.github.io") != site_of("bob.github.io")
    assert site_of("127.0.0.1") == "127.0.0.1" != site_of("127.0.0.2")


def test_metadata_fields() -> None:
    transport = {"final_url": NEWS_URL, "status_code": 200, "bytes": 10, "timings_ms": {"x": 1}}
    meta = build(page("news_article"), ["metadata"], metadata=transport)["metadata"]
    assert meta["final_url"] == NEWS_URL
    assert meta["status_code"] == 200
    assert meta["bytes"] == 10
    assert meta["content_type"] == "text/html; charset=utf-8"
    assert meta["title"].startswith("City council approves riverside flood barrier")
    assert meta["description"].startswith("The council voted 31 to 9")
    assert meta["language"] == "en-GB"
    assert meta["canonical"] == NEWS_URL
    assert meta["og"]["title"] == "City council approves riverside flood barrier"
    assert meta["og"]["image"] == (
        "https://www.northfieldcourier.example/images/2024/03/alder-barrier-hero.jpg"
    )
    assert meta["og"]["site_name"] == "The Northfield Courier"
    assert meta["timings_ms"]["x"] == 1
    assert meta["timings_ms"]["parse"] > 0
    bare = build("<p>Hello</p>", ["metadata"])["metadata"]
    assert bare["title"] is None
    assert bare["og"] == {}
    assert bare["canonical"] is None


def test_extract_schema() -> None:
    schema = {
        "headline": "h1.headline",
        "author": {"selector": ".byline a"},
        "author_page": {"selector": ".byline a", "attr": "href"},
        "images": {"selector": "article img", "attr": "src", "all": True},
        "topics": {"selector": ".tags a", "all": True},
        "price": ".price",
        "prices": {"selector": ".price", "all": True},
        "lang": {"selector": "html", "attr": "lang"},
    }
    extracted = build(page("news_article"), ["markdown"], extract=schema)["extract"]
    assert extracted == {
        "headline": "City council approves riverside flood barrier after decade of delays",
        "author": "Harriet Mbeki",
        "author_page": "https://www.northfieldcourier.example/authors/harriet-mbeki",
        "images": [
            "https://www.northfieldcourier.example/images/2024/03/alder-barrier-hero.jpg",
            "https://www.northfieldcourier.example/img/authors/hm.jpg",
        ],
        "topics": ["Flooding", "Northfield Council"],
        "price": None,
        "prices": [],
        "lang": "en-GB",
    }


SHOP = """<html><head><base href="https://shop.example/catalog/"></head><body><main>
<ul id="products">
  <li class="item sale" data-sku="A1"><h3>Kettle</h3><span class="price">£20</span>
    <a href="kettle.html" rel="nofollow sponsored">Details</a></li>
  <li class="item" data-sku="B2"><h3>Toaster <b>Pro</b></h3><span class="price">£35</span>
    <a>No link yet</a></li>
  <li class="item sale" data-sku="C3"><h3>Blender</h3><span class="price">£50</span>
    <a href="/blender">Details</a></li>
  <li class="item SALE" data-sku="D4"><h3>Grinder</h3></li>
  <li class="item sale" data-sku="E5"><h3>Mixer</h3><span class="price">£80</span></li>
</ul><p class="note">Prices include   VAT.</p></main></body></html>"""

SELECTORS = {
    ":has()": ({"selector": "li:has(> a[href])", "attr": "data-sku", "all": True}, ["A1", "C3"]),
    ":is()": ({"selector": ":is(h3, .note)", "all": True},
              ["Kettle", "Toaster Pro", "Blender", "Grinder", "Mixer", "Prices include VAT."]),
    ":where()": ({"selector": "li:where(.sale) h3", "all": True}, ["Kettle", "Blender", "Mixer"]),
    ":not() with a list": ({"selector": "li:not(.sale, [data-sku=D4]) h3"}, "Toaster Pro"),
    ":nth-child(an+b of S)": (
        {"selector": "li:nth-child(2n+1 of .sale)", "attr": "data-sku", "all": True},
        ["A1", "E5"],
    ),
    "[attr=v i]": ({"selector": "li[class~=sale i] h3", "all": True},
                   ["Kettle", "Blender", "Grinder", "Mixer"]),
    ":-soup-contains()": ({"selector": "li:-soup-contains('Blender') .price"}, "£50"),
    "first match that has the attribute": ({"selector": "li a", "attr": "href"},
                                            "https://shop.example/catalog/kettle.html"),
    "all that have it, made absolute": (
        {"selector": "li a", "attr": "HREF", "all": True},
        ["https://shop.example/catalog/kettle.html", "https://shop.example/blender"],
    ),
    "attributes as written": ({"selector": "li a[rel]", "attr": "rel"}, "nofollow sponsored"),
    "a string rule, text collapsed": (".note", "Prices include VAT."),
    "no match": ({"selector": "table td"}, None),
    "no match, all": ({"selector": "table td", "all": True}, []),
}  # fmt: skip


@pytest.mark.parametrize("name", list(SELECTORS))
def test_extract_selectors_of_css_level_4(name: str) -> None:
    rule, expected = SELECTORS[name]
    result = build(SHOP, ["links"], url="https://shop.example/catalog/", extract={"f": rule})
    assert result["extract"] == {"f": expected}


def test_extract_on_documents_without_markup() -> None:
    json_page = build('{"a": 1}', ["text"], extract={"a": "p"}, metadata={"content_type": "x/json"})
    assert json_page["extract"] == {"a": None}
    assert build("", ["text"], extract={"a": {"selector": "p", "all": True}})["extract"] == {
        "a": []
    }


@pytest.mark.parametrize(
    "rule",
    ["div[", "p:unknown-pseudo", "li:nth-child(2n+1 of)", ":has()", "a[href=x y]", "p >",
     {"selector": ""}, {"attr": "x"}, {"selector": "p", "css": "x"}],
)  # fmt: skip
def test_a_bad_schema_is_refused(rule: object) -> None:
    with pytest.raises(SchemaError):
        build("<p>x</p>", ["markdown"], extract={"field": rule})


def test_cleaned_html_has_no_scripts_styles_comments_or_handlers() -> None:
    html = build(page("news_article"), ["html", "raw_html"])
    cleaned = html["html"]
    assert "<script" not in cleaned
    assert "<style" not in cleaned
    assert "<!--" not in cleaned
    assert "onclick" not in cleaned
    assert "onerror" not in cleaned
    assert "javascript:" not in cleaned
    assert "stylesheet" not in cleaned
    assert "Northfield City Council has approved" in cleaned
    assert html["raw_html"] == page("news_article")


def test_only_requested_formats_are_returned() -> None:
    result = build(page("blog_post"), ["links", "text"], extract={"h": "h1"})
    assert list(result) == ["links", "text", "extract"]


def test_json_and_plain_text_documents() -> None:
    body = '{"name": "Outrider", "tags": ["a"]}'
    result = build(
        body, ["markdown", "text", "links"], metadata={"content_type": "application/json"}
    )
    assert result["markdown"].startswith('```json\n{\n  "name": "Outrider"')
    assert result["text"] == body
    assert result["links"] == {"internal": [], "external": []}
    text = build("Line one.\nLine two.", ["markdown"], metadata={"content_type": "text/plain"})
    assert text["markdown"] == "Line one.\nLine two."


def test_pages_without_main_content_fall_back_to_visible_text() -> None:
    tiny = build("<html><body><nav>Menu</nav><p>Hello world</p></body></html>", ["markdown"])
    assert "Hello world" in tiny["markdown"]
    feed = "<?xml version='1.0' encoding='utf-8'?><rss><channel><item><title>Item one</title>"
    feed += "<description>First entry</description></item></channel></rss>"
    xml = build(feed, ["text"], metadata={"content_type": "application/rss+xml"})
    assert "Item one" in xml["text"]
    assert "First entry" in xml["text"]
    assert build("", ["markdown", "links"]) == {
        "markdown": "",
        "links": {"internal": [], "external": []},
    }


@pytest.mark.parametrize(
    ("raw", "header", "expected", "encoding"),
    [
        ("<meta charset='iso-8859-1'><p>Café “x”".encode("cp1252"), None, "Café “x”", "cp1252"),
        (
            ("<p>Москва — столица России, крупнейший город страны. " * 3).encode("cp1251"),
            None,
            "Москва — столица",
            "cp1251",
        ),
        ("<p>Ünïcödé".encode(), None, "Ünïcödé", "utf_8"),
        (b"\xef\xbb\xbf<p>BOM \xc3\xa9", "iso-8859-1", "BOM é", "utf_8"),
        ("<meta charset=utf-8><p>Café".encode("cp1252"), "windows-1252", "Café", "cp1252"),
        ("<p>Grüße".encode("utf-16"), None, "Grüße", "utf_16_le"),
    ],
)
def test_charsets(raw: bytes, header: str | None, expected: str, encoding: str) -> None:
    text, used = decode(raw, header)
    assert expected in text
    assert used == encoding


# The parse pool


def big_article(copies: int) -> str:
    html = page("news_article")
    start, end = html.index('<div class="story-body">'), html.index('<div class="tags">')
    return html[:start] + html[start:end] * copies + html[end:]


async def test_the_loop_keeps_ticking_while_a_big_page_is_parsed() -> None:
    pool = ParsePool(1)
    try:
        assert await parse_off_loop(pool, os.getpid) != os.getpid()
        ticks: list[float] = []

        async def heartbeat() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        beating = asyncio.create_task(heartbeat())
        started = time.monotonic()
        result = await parse_off_loop(
            pool, build_result, big_article(300), url="http://x.example/", formats=ALL_FORMATS,
            extract=None, metadata={},
        )  # fmt: skip
        parse_s = time.monotonic() - started
        beating.cancel()
        assert "A long road to approval" in result["markdown"]
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        assert parse_s > 0.3, "the page must take a while to parse for this test to mean much"
        # Blocked, the loop would show one gap as long as the parse.
        assert max(gaps) < parse_s / 3, (max(gaps), parse_s)
    finally:
        await pool.close()


async def test_a_dead_child_fails_the_job_and_the_pool_recovers() -> None:
    pool = ParsePool(1)
    try:
        with pytest.raises(JobError) as caught:
            await parse_off_loop(pool, functools.partial(os._exit, 3))
        assert (caught.value.code, caught.value.retryable) == ("parse_failed", True)
        assert await parse_off_loop(pool, os.getpid) != os.getpid()
    finally:
        await pool.close()


async def test_the_pool_recycles_its_children_and_leaves_none_behind() -> None:
    pool = ParsePool(1, recycle_after=2)
    seen: set[int] = set()
    try:
        for _ in range(5):
            seen.add(await parse_off_loop(pool, os.getpid))
        seen |= pool.pids()
    finally:
        await pool.close()
    assert len(seen) >= 3  # a fresh child every two tasks
    assert not [pid for pid in seen if psutil.pid_exists(pid)]

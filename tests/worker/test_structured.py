"""The `structured` format: JSON-LD, microdata, RDFa and Open Graph as pages carry them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.settings import Settings
from tests.worker.file_server import FileServer, serve
from tests.worker.test_fetch import engine, fetch

HTML = "text/html; charset=utf-8"

PRODUCT = {
    "@context": "https://schema.org",
    "@type": "Product",
    "name": "Brass Ship's Lantern",
    "sku": "LNT-42",
    "offers": {"@type": "Offer", "price": "89.00", "priceCurrency": "EUR"},
}
RECIPE = {
    "@context": "https://schema.org",
    "@type": "Recipe",
    "name": "Fisherman's Stew",
    "recipeIngredient": ["2 onions", "500 g cod", "1 l fish stock"],
    "recipeInstructions": [{"@type": "HowToStep", "text": "Soften the onions."}],
}
ARTICLE = {
    "@context": "https://schema.org",
    "@graph": [
        {"@type": "NewsArticle", "headline": "Barrier approved", "author": {"name": "J. Reed"}},
        {"@type": "BreadcrumbList", "itemListElement": []},
    ],
}


def page(head: str, body: str) -> bytes:
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>".encode()


def ld(value: Any) -> str:
    return f'<script type="application/ld+json">{json.dumps(value)}</script>'


SHOP = page(
    '<title>Lantern</title><meta property="og:title" content="Brass Lantern">'
    '<meta property="og:type" content="product">'
    '<meta property="og:image" content="https://img.example/1.jpg">'
    '<meta property="og:image" content="https://img.example/2.jpg">'
    + ld(PRODUCT)
    + '<script type="application/ld+json">{"@type": "Broken", "name": </script>'
    + "<script type='APPLICATION/LD+JSON'>\n// a comment some CMSs add\n"
    + json.dumps([RECIPE])
    + "</script>",
    '<div itemscope itemtype="https://schema.org/Product"><h1 itemprop="name">Brass Lantern</h1>'
    '<div itemprop="offers" itemscope itemtype="https://schema.org/Offer">'
    '<span itemprop="price">89.00</span></div></div>',
)
NEWS = page(ld(ARTICLE), "<article><h1>Barrier approved</h1><p>Words.</p></article>")
RDFA = page(
    "<title>Event</title>",
    '<div vocab="https://schema.org/" typeof="Event"><span property="name">Harbour Fair</span>'
    '<span property="startDate">2026-06-01</span></div>',
)
PLAIN = page("<title>Nothing</title>", "<p>No structured data here.</p>")


@pytest.fixture
async def site() -> AsyncIterator[FileServer]:
    files = {name: (body, HTML) for name, body in [("shop", SHOP), ("news", NEWS)]}
    files.update({"event": (RDFA, HTML), "plain": (PLAIN, HTML)})
    files["data.json"] = (b'{"a": 1}', "application/json")
    async with serve(files) as server:
        yield server


async def structured(settings: Settings, url: str) -> dict[str, Any]:
    async with engine(settings) as ctx:
        result = await fetch(ctx, url, formats=["structured", "markdown"])
    value: dict[str, Any] = result["structured"]
    return value


async def test_products_recipes_and_open_graph(settings: Settings, site: FileServer) -> None:
    data = await structured(settings, site.url("shop"))
    assert data["json_ld"] == [PRODUCT, RECIPE]  # the broken script is skipped, not fatal
    assert data["microdata"] == [
        {
            "@type": "Product",
            "@context": "https://schema.org",
            "name": "Brass Lantern",
            "offers": {"@type": "Offer", "@context": "https://schema.org", "price": "89.00"},
        }
    ]
    assert data["opengraph"]["og:title"] == "Brass Lantern"
    assert data["opengraph"]["og:image"] == [
        "https://img.example/1.jpg",
        "https://img.example/2.jpg",
    ]
    assert data["rdfa"] == []  # Open Graph tags alone are not run through RDFa


async def test_an_article_graph_and_rdfa(settings: Settings, site: FileServer) -> None:
    news = await structured(settings, site.url("news"))
    assert news["json_ld"] == [ARTICLE]
    event = await structured(settings, site.url("event"))
    names = [
        value["@value"]
        for item in event["rdfa"]
        for value in item.get("https://schema.org/name", [])
    ]
    assert names == ["Harbour Fair"]
    assert any("https://schema.org/Event" in item.get("@type", []) for item in event["rdfa"])


async def test_pages_without_it_give_empty_values(settings: Settings, site: FileServer) -> None:
    empty: dict[str, Any] = {"json_ld": [], "microdata": [], "rdfa": [], "opengraph": {}}
    assert await structured(settings, site.url("plain")) == empty
    assert await structured(settings, site.url("data.json")) == empty

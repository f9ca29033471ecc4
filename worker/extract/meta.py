"""Page metadata from the markup: title, description, language, canonical URL, Open Graph.

Open Graph properties go in one `og` dict keyed without the `og:` prefix (`title`, `image`,
`image:width`, ...); the first value of a repeated property wins, and URL-valued ones are made
absolute. The title is `<title>`, else `og:title`, else the first `<h1>`; the description is
`<meta name=description>`, else `og:description`; the language is `<html lang>`, else a
`Content-Language` meta, as written (`en-GB`).
"""

from __future__ import annotations

from typing import Any

import lxml.html

from worker.extract.links import absolute_http_url

_OG_URLS = frozenset(
    {"url", "image", "image:url", "image:secure_url", "video", "video:url", "video:secure_url",
     "audio", "audio:url", "audio:secure_url"}
)  # fmt: skip


def _squash(text: str | None) -> str | None:
    squashed = " ".join((text or "").split())
    return squashed or None


def _meta_values(tree: lxml.html.HtmlElement) -> dict[str, str]:
    """Meta content by lower-cased name, property or http-equiv; the first one wins."""
    values: dict[str, str] = {}
    for meta in tree.iter("meta"):
        content = meta.get("content")
        if content is None:
            continue
        for attribute in ("property", "name", "http-equiv"):
            key = (meta.get(attribute) or "").strip().lower()
            if key and key not in values:
                values[key] = content.strip()
    return values


def _open_graph(values: dict[str, str], base_url: str) -> dict[str, str]:
    og: dict[str, str] = {}
    for key, value in values.items():
        if not key.startswith("og:") or not value:
            continue
        name = key[3:]
        if name in _OG_URLS:
            value = absolute_http_url(base_url, value) or value
        og[name] = value
    return og


def _canonical(tree: lxml.html.HtmlElement, base_url: str) -> str | None:
    for link in tree.iter("link"):
        rel = (link.get("rel") or "").lower().split()
        if "canonical" in rel:
            return absolute_http_url(base_url, link.get("href"))
    return None


def _language(tree: lxml.html.HtmlElement, values: dict[str, str]) -> str | None:
    lang = tree.get("lang") or tree.get("{http://www.w3.org/XML/1998/namespace}lang")
    lang = lang or values.get("content-language") or values.get("language")
    return _squash((lang or "").split(",")[0])


def _first_text(tree: lxml.html.HtmlElement, tag: str) -> str | None:
    for element in tree.iter(tag):
        if text := _squash(element.text_content()):
            return text
    return None


def page_metadata(tree: lxml.html.HtmlElement | None, base_url: str) -> dict[str, Any]:
    """Title, description, language, canonical and og of a page (None/{} when missing)."""
    if tree is None:
        return {"title": None, "description": None, "language": None, "canonical": None, "og": {}}
    values = _meta_values(tree)
    og = _open_graph(values, base_url)
    return {
        "title": _first_text(tree, "title") or og.get("title") or _first_text(tree, "h1"),
        "description": _squash(values.get("description")) or og.get("description"),
        "language": _language(tree, values),
        "canonical": _canonical(tree, base_url),
        "og": og,
    }

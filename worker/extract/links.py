"""The `links` format: every http(s) link of a page, absolute, de-duplicated, split in two.

- `internal` links share the page's registrable domain (eTLD+1 from the Public Suffix List
  bundled with `tld`): `blog.example.com` is internal to `www.example.com`, `foo.github.io`
  is not internal to `bar.github.io`; under an unlisted TLD the last two labels count. IP
  addresses and one-label hosts (localhost) must match exactly. Scheme and port do not matter.
- URLs are resolved against `<base href>` (else the final URL); fragments are dropped, so
  `/a#x` and `/a#y` are one link; a fragment-only href (`#top`) is no link.
- Only http and https: `javascript:`, `mailto:`, `tel:`, `data:` and the like are skipped.
- Order is document order; the text is the first non-empty anchor text (else the `aria-label`,
  `title`, or an image's `alt`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import lxml.html

from shared.urls import site_of

_STRIP = str.maketrans("", "", "\t\n\r")


def absolute_http_url(base: str, href: str | None) -> str | None:
    """`href` made absolute against `base`, without its fragment; None unless http(s)."""
    if href is None:
        return None
    href = href.translate(_STRIP).strip()
    if not href or href.startswith("#"):
        return None
    try:
        parts = urlsplit(urljoin(base, href))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
    except ValueError:  # e.g. a malformed IPv6 host
        return None
    netloc = parts.netloc if "@" in parts.netloc else parts.netloc.lower()
    return urlunsplit(parts._replace(netloc=netloc, fragment=""))


def _anchor_text(element: lxml.html.HtmlElement) -> str:
    text = " ".join(element.text_content().split())
    if text:
        return text
    for name in ("aria-label", "title", "alt"):
        if value := (element.get(name) or "").strip():
            return value
    for image in element.iter("img"):
        if alt := " ".join((image.get("alt") or "").split()):
            return alt
    return ""


def extract_links(tree: lxml.html.HtmlElement, base_url: str, page_url: str) -> dict[str, Any]:
    """`{"internal": [{"url", "text"}], "external": [...]}` for the links of `tree`."""
    seen: dict[str, dict[str, str]] = {}
    for element in tree.iter("a", "area"):
        url = absolute_http_url(base_url, element.get("href"))
        if url is None:
            continue
        entry = seen.get(url)
        if entry is None:
            seen[url] = {"url": url, "text": _anchor_text(element)}
        elif not entry["text"]:
            entry["text"] = _anchor_text(element)
    own = site_of(urlsplit(page_url).hostname or "")
    internal: list[dict[str, str]] = []
    external: list[dict[str, str]] = []
    for url, entry in seen.items():
        same = site_of(urlsplit(url).hostname or "") == own
        (internal if same else external).append(entry)
    return {"internal": internal, "external": external}

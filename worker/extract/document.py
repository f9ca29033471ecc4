"""From a page's text to a job result: one key per requested format, plus `extract`.

Synchronous and picklable on purpose: it runs in the parse pool (worker/extract/pool.py), for
the `fetch` engine with the response body and for the `render` engine with the rendered DOM.

Markup (HTML, XHTML, XML) is parsed once with lxml for links, metadata, the main content
(trafilatura reads that tree) and the cleaned HTML; BeautifulSoup parses it again only when an
`extract` schema is asked for (worker/extract/schema.py). PDF and DOCX files are read by
worker/extract/docfile.py. JSON and plain text
have no markup: `markdown` is the text (JSON pretty-printed in a fenced block), `text`, `html`
and `raw_html` are the body as received, `links` is empty, every extract rule misses, and the
page metadata fields are null.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal
from urllib.parse import urljoin

import lxml.html

from shared.jsonsafe import parse_json
from worker.extract import charset, clean
from worker.extract.content import MainContent, extract_main
from worker.extract.docfile import build_from_file, file_kind
from worker.extract.links import extract_links
from worker.extract.meta import page_metadata
from worker.extract.schema import run_schema
from worker.extract.structured import empty as no_structured_data
from worker.extract.structured import structured_data

Kind = Literal["markup", "json", "text"]
TRANSPORT_FIELDS = ("final_url", "status_code", "content_type", "bytes", "charset")


def document_kind(content_type: str | None) -> Kind | None:
    """How a media type is read: markup, JSON or text; None when it is none of them."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media in ("text/html", "application/xhtml+xml") or media.endswith(("/xml", "+xml")):
        return "markup"
    if media.endswith(("/json", "+json")):
        return "json"
    if media == "text/plain":
        return "text"
    return None


def _base_url(tree: lxml.html.HtmlElement | None, url: str) -> str:
    if tree is not None:
        for base in tree.iter("base"):
            href = (base.get("href") or "").strip()
            if href:
                try:
                    joined = urljoin(url, href)
                except ValueError:
                    break
                return joined if joined.startswith(("http://", "https://")) else url
            break
    return url


def _content(
    tree: lxml.html.HtmlElement | None, url: str, base: str, formats: list[str], links: bool
) -> dict[str, Any]:
    """The `html`, `markdown` and `text` formats; mutates `tree` (cleans it)."""
    result: dict[str, Any] = {}
    wants_content = "markdown" in formats or "text" in formats
    found = None
    if wants_content and tree is not None:
        found = extract_main(tree, url, base_url=base, links=links)
    if tree is not None and ("html" in formats or (wants_content and found is None)):
        clean.clean_in_place(tree)
    if "html" in formats:
        result["html"] = clean.to_html(tree) if tree is not None else ""
    if wants_content and found is None:  # no main content: the visible text stands in
        markdown, text = clean.visible_text(tree) if tree is not None else ("", "")
        found = MainContent(markdown=markdown, text=text, found=False)
    if found is not None:
        result.update({name: getattr(found, name) for name in ("markdown", "text")})
    return result


def _from_markup(
    html: str, url: str, formats: list[str], extract: dict[str, Any] | None, links: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    tree = clean.parse(html)
    base = _base_url(tree, url)
    result: dict[str, Any] = {}
    page = page_metadata(tree, base) if "metadata" in formats else {}
    if "links" in formats:
        result["links"] = (
            extract_links(tree, base, url) if tree is not None else {"internal": [], "external": []}
        )
    if extract is not None:
        result["extract"] = run_schema(html if tree is not None else None, extract, base)
    if "raw_html" in formats:
        result["raw_html"] = html
    if "structured" in formats:  # before _content cleans the tree of its scripts
        result["structured"] = structured_data(tree, clean.prepare(html), base)
    result.update(_content(tree, url, base, formats, links))  # last: it cleans the tree
    return result, page


def _fenced_json(text: str) -> str:
    # Too deep, or not JSON: as received (pretty-printing a deep value would recurse too far).
    parsed = parse_json(text)
    pretty = text if parsed.error else json.dumps(parsed.value, indent=2, ensure_ascii=False)
    return f"```json\n{pretty}\n```"


def _from_plain(
    body: str, kind: Kind, formats: list[str], extract: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    result: dict[str, Any] = {}
    if "markdown" in formats:
        result["markdown"] = _fenced_json(body) if kind == "json" else body
    for name in ("text", "html", "raw_html"):
        if name in formats:
            result[name] = body
    if "links" in formats:
        result["links"] = {"internal": [], "external": []}
    if "structured" in formats:
        result["structured"] = no_structured_data()
    if extract is not None:
        result["extract"] = run_schema(None, extract, "")
    return result, page_metadata(None, "")


def build_result(
    html: str,
    *,
    url: str,
    formats: list[str],
    extract: dict[str, Any] | None,
    metadata: dict[str, Any],
    markdown_links: bool = False,
) -> dict[str, Any]:
    """The job result for a page whose text is `html` and whose final URL is `url`.

    `metadata` holds what the transport knows (final_url, status_code, content_type, bytes,
    and optionally charset and timings_ms); the page's own fields and the parse time are added.
    `markdown_links` keeps link targets in `markdown` as `[text](absolute url)`.
    Raises worker.extract.schema.SchemaError for an unusable `extract` schema.
    """
    started = time.perf_counter()
    kind = document_kind(metadata.get("content_type") or "text/html") or "markup"
    if kind == "markup":
        result, page = _from_markup(html, url, formats, extract, markdown_links)
    else:
        result, page = _from_plain(html, kind, formats, extract)
    if "metadata" in formats:
        known = {name: metadata[name] for name in TRANSPORT_FIELDS if name in metadata}
        timings = dict(metadata.get("timings_ms") or {})
        timings["parse"] = round((time.perf_counter() - started) * 1000, 1)
        result["metadata"] = {"final_url": url, **known, **page, "timings_ms": timings}
    return {name: result[name] for name in (*formats, "extract") if name in result}


def build_from_bytes(
    raw: bytes,
    *,
    header_charset: str | None,
    url: str,
    formats: list[str],
    extract: dict[str, Any] | None,
    metadata: dict[str, Any],
    markdown_links: bool = False,
    max_pages: int = 500,
) -> dict[str, Any]:
    """Decode a response body (see worker.extract.charset), then `build_result`; a PDF or DOCX
    body goes to worker.extract.docfile (at most `max_pages` pages)."""
    file = file_kind(str(metadata.get("content_type") or ""))
    if file is not None:
        return build_from_file(
            raw,
            kind=file,
            url=url,
            formats=formats,
            extract=extract,
            metadata=metadata,
            max_pages=max_pages,
        )
    started = time.perf_counter()
    kind = document_kind(metadata.get("content_type"))
    text, encoding = charset.decode(raw, header_charset, markup=kind in (None, "markup"))
    timings = dict(metadata.get("timings_ms") or {})
    timings["decode"] = round((time.perf_counter() - started) * 1000, 1)
    metadata = {**metadata, "charset": encoding, "timings_ms": timings}
    return build_result(
        text,
        url=url,
        formats=formats,
        extract=extract,
        metadata=metadata,
        markdown_links=markdown_links,
    )

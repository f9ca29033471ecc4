"""A document file (PDF or DOCX) to a job result: the same formats as a web page.

`markdown` and `text` come from the document's blocks (worker/extract/docblocks.py). `html`
and `raw_html` are an HTML rendering of the document (a DOCX's is mammoth's, with its links; a
PDF's is built from the blocks): there is no source markup. `links` and `extract` read that
HTML (a PDF's `links` also the URLs of its link annotations and of its text); `structured` is
empty. `metadata` has the transport's fields, the document's `title` (its first heading's when
its properties have none), `author` and `pages`, and the web page's other fields as null.
"""

from __future__ import annotations

import html as html_lib
import time
from typing import Any, Literal

from worker.extract import clean
from worker.extract.docblocks import DocBlock, to_html, to_markdown, to_text
from worker.extract.docx import read_docx
from worker.extract.links import extract_links
from worker.extract.meta import page_metadata
from worker.extract.pdf import read_pdf
from worker.extract.schema import run_schema
from worker.extract.structured import empty as no_structured_data

DocumentKind = Literal["pdf", "docx"]
PDF_TYPE = "application/pdf"
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
DOCX_MAX_UNZIPPED = 64 * 1024 * 1024
TRANSPORT_FIELDS = ("final_url", "status_code", "content_type", "bytes")


def file_kind(media: str) -> DocumentKind | None:
    """`pdf` or `docx` for those media types (parameters ignored), else None."""
    media = media.split(";")[0].strip().lower()
    return "pdf" if media == PDF_TYPE else "docx" if media == DOCX_TYPE else None


def sniff_file(body: bytes) -> str | None:
    """The media type of a PDF or DOCX body by its first bytes, else None."""
    if body[:1024].lstrip(b"\x00\t\r\n ").startswith(b"%PDF-"):
        return PDF_TYPE
    if body.startswith(b"PK\x03\x04") and b"word/" in body[:65536]:
        return DOCX_TYPE
    return None


def _read(
    raw: bytes, kind: DocumentKind, max_pages: int
) -> tuple[list[DocBlock], dict[str, Any], str, str]:
    """Blocks, metadata, the HTML rendering, and the HTML `links` reads."""
    if kind == "docx":
        blocks, meta, body = read_docx(raw, DOCX_MAX_UNZIPPED)
        meta["title"] = meta.get("title") or _first_heading(blocks)
        title = html_lib.escape(meta["title"] or "")
        page = f"<html><head><title>{title}</title></head><body>{body}</body></html>"
        return blocks, meta, page, page
    blocks, meta = read_pdf(raw, max_pages)
    meta["title"] = meta.get("title") or _first_heading(blocks)
    page = to_html(blocks, meta["title"])
    anchors = "".join(
        f'<a href="{html_lib.escape(url)}">{html_lib.escape(url)}</a>' for url in meta.pop("links")
    )
    return blocks, meta, page, page.replace("</body>", anchors + "</body>")


def _first_heading(blocks: list[DocBlock]) -> str | None:
    return next((block.text for block in blocks if block.kind == "heading"), None)


def build_from_file(
    raw: bytes,
    *,
    kind: DocumentKind,
    url: str,
    formats: list[str],
    extract: dict[str, Any] | None,
    metadata: dict[str, Any],
    max_pages: int,
) -> dict[str, Any]:
    """The job result for a PDF or DOCX body; raises docblocks.DocumentError (unreadable) or
    schema.SchemaError (a bad `extract`)."""
    started = time.perf_counter()
    blocks, meta, page_html, links_html = _read(raw, kind, max_pages)
    result: dict[str, Any] = {}
    if "markdown" in formats:
        result["markdown"] = to_markdown(blocks)
    if "text" in formats:
        result["text"] = to_text(blocks)
    for name in ("html", "raw_html"):
        if name in formats:
            result[name] = page_html
    if "links" in formats:
        tree = clean.parse(links_html)
        empty: dict[str, Any] = {"internal": [], "external": []}
        result["links"] = extract_links(tree, url, url) if tree is not None else empty
    if "structured" in formats:
        result["structured"] = no_structured_data()
    if extract is not None:
        result["extract"] = run_schema(page_html, extract, url)
    if "metadata" in formats:
        known = {name: metadata[name] for name in TRANSPORT_FIELDS if name in metadata}
        timings = dict(metadata.get("timings_ms") or {})
        timings["parse"] = round((time.perf_counter() - started) * 1000, 1)
        fields = {**page_metadata(None, ""), **meta}
        result["metadata"] = {"final_url": url, **known, **fields, "timings_ms": timings}
    return {name: result[name] for name in (*formats, "extract") if name in result}

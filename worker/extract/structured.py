"""The `structured` format: the data a page carries about itself, by extruct (BSD).

`{"json_ld": [...], "microdata": [...], "rdfa": [...], "opengraph": {...}}`:
- json_ld: every `<script type="application/ld+json">` object (a top-level list is spread), read
  with the depth bound of shared/jsonsafe.py; a script that is not JSON even without leading
  HTML or JavaScript comment lines is skipped, never fatal.
- microdata: extruct's items in schema.org's JSON-LD shape (`@type`, `@context`, properties;
  nested items the same), as extruct's `uniform` output has them.
- rdfa: extruct's (pyRdfa's) expanded JSON-LD, only for pages with RDFa markup beyond `<meta
  property>` (`typeof`, `vocab`, `about`, `property` on other elements): pyRdfa costs about
  4 ms per KB of page, and Open Graph tags alone are already under `opengraph`.
- opengraph: property to content (`og:title`, `article:author`, ...); a property given more
  than once is a list.
Microdata and JSON-LD read the tree the page was parsed into once (worker/extract/clean.py);
RDFa needs pyRdfa's own parse. A syntax whose extractor fails gives its empty value.
"""

from __future__ import annotations

import re
from typing import Any

import lxml.html
from extruct.opengraph import OpenGraphExtractor
from extruct.rdfa import RDFaExtractor
from extruct.w3cmicrodata import MicrodataExtractor

from shared.jsonsafe import parse_json
from shared.logging import describe, get_logger

log = get_logger(__name__)

_COMMENT_LINE = re.compile(r"^\s*(//.*|<!--.*-->)\s*$", re.MULTILINE)
_JSON_LD = (
    "//script[translate(@type, 'APPLICATIONLDJSON', 'applicationldjson')='application/ld+json']"
)
_RDFA = "//*[@typeof or @vocab or @about or (@property and not(self::meta))]"


def empty() -> dict[str, Any]:
    """The format's value for a page (or document) that carries nothing."""
    return {"json_ld": [], "microdata": [], "rdfa": [], "opengraph": {}}


def _json_ld(tree: lxml.html.HtmlElement) -> list[Any]:
    found: list[Any] = []
    for script in tree.xpath(_JSON_LD):
        text = script.text_content().strip().removeprefix("<![CDATA[").removesuffix("]]>")
        parsed = parse_json(text)
        if parsed.error:
            parsed = parse_json(_COMMENT_LINE.sub("", text))
        if parsed.error:
            continue  # malformed JSON-LD is skipped
        value = parsed.value
        found.extend(item for item in (value if isinstance(value, list) else [value]) if item)
    return found


def _schema_org(item: dict[str, Any]) -> dict[str, Any]:
    """A microdata item as JSON-LD: `{"@type": "Product", "@context": ..., "name": ...}`."""
    types = item.get("type")
    types = types if isinstance(types, list) else [types] if types else []
    context = None
    short = []
    for full in types:
        base, _, name = str(full).rpartition("/")
        context = context or base or None
        short.append(name or full)
    out: dict[str, Any] = {}
    if short:
        out["@type"] = short[0] if len(short) == 1 else short
    if context:
        out["@context"] = context
    if "id" in item:
        out["@id"] = item["id"]
    for name, value in (item.get("properties") or {}).items():
        out[name] = _value(value)
    return out


def _value(value: Any) -> Any:
    if isinstance(value, list):
        return [_value(v) for v in value]
    if isinstance(value, dict) and "properties" in value:
        return _schema_org(value)
    return value


def _opengraph(tree: lxml.html.HtmlElement) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for item in OpenGraphExtractor().extract_items(tree):
        for name, content in item.get("properties", []):
            if name not in properties:
                properties[name] = content
            elif isinstance(properties[name], list):
                properties[name].append(content)
            else:
                properties[name] = [properties[name], content]
    return properties


def _safely(syntax: str, fallback: Any, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:  # a library's failure on one syntax never fails the page
        log.info("structured.syntax_failed", syntax=syntax, error=describe(exc))
        return fallback


def structured_data(tree: lxml.html.HtmlElement | None, html: str, base_url: str) -> dict[str, Any]:
    """The page's own structured data (before the tree is cleaned: JSON-LD lives in scripts)."""
    if tree is None:
        return empty()
    microdata = _safely("microdata", [], MicrodataExtractor().extract_items, tree, base_url)
    rdfa: list[Any] = []
    if tree.xpath(_RDFA):
        rdfa = _safely("rdfa", [], RDFaExtractor().extract, html, base_url)
    return {
        "json_ld": _safely("json_ld", [], _json_ld, tree),
        "microdata": [_schema_org(item) for item in microdata],
        "rdfa": rdfa,
        "opengraph": _safely("opengraph", {}, _opengraph, tree),
    }

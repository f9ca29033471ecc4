"""The `extract` format: a CSS-selector schema turned into JSON, by BeautifulSoup and soupsieve.

A rule is a selector string (the first match's text, whitespace collapsed) or
`{"selector", "attr"?, "all"?}`. Text is an element's text content; an `attr` value is the
attribute as written (names are case-insensitive, as in HTML), except URL attributes (`href`,
`src`, ...) which are made absolute. No match gives null, or [] with `all`. Elements that lack
the attribute are skipped: a single rule takes the first match that has it, `all` lists those
that have it.

Selectors are whatever soupsieve supports: CSS level 3 and most of level 4 (`:has()`, `:is()`,
`:where()`, `:not()` with a list, `:nth-child(2n+1 of .x)`, `[attr=v i]`), plus
`:-soup-contains()`. The page is parsed by BeautifulSoup with lxml's HTML parser, only when a
schema is asked for (the other formats read lxml's tree). Every selector is compiled before
any request (`compile_schema`), so a bad one fails the job as `invalid_extract` at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin

import soupsieve
from bs4 import BeautifulSoup, Tag
from pydantic import ValidationError

from shared.specs import ExtractRule
from worker.extract.clean import prepare

URL_ATTRIBUTES = frozenset({"href", "src", "action", "poster", "data", "cite", "formaction"})


class SchemaError(ValueError):
    """An extraction rule that cannot be used (a bad selector, a malformed rule)."""


def _rule(name: str, rule: object) -> ExtractRule:
    if isinstance(rule, ExtractRule):
        return rule
    try:
        if isinstance(rule, str):
            return ExtractRule(selector=rule)
        return ExtractRule.model_validate(rule)
    except ValidationError as exc:
        raise SchemaError(f"extract rule {name!r} is invalid: {exc.errors()[0]['msg']}") from None


def compile_schema(
    schema: Mapping[str, Any],
) -> list[tuple[str, ExtractRule, soupsieve.SoupSieve]]:
    """Check every rule and compile its selector; raises SchemaError."""
    compiled = []
    for name, raw in schema.items():
        rule = _rule(name, raw)
        try:
            selector = soupsieve.compile(rule.selector)
        except soupsieve.SelectorSyntaxError as exc:
            reason = str(exc).splitlines()[0]
            raise SchemaError(f"extract rule {name!r}: invalid selector: {reason}") from None
        compiled.append((name, rule, selector))
    return compiled


def parse(html: str) -> BeautifulSoup | None:
    """The page for selectors; attribute values stay strings (`class` too), as written."""
    text = prepare(html)
    if not text.strip():
        return None
    return BeautifulSoup(text, "lxml", multi_valued_attributes=None)


def _value(element: Tag, rule: ExtractRule, base_url: str) -> str | None:
    if rule.attr is None:
        return " ".join(element.get_text().split())
    value = element.get(rule.attr.lower())
    if not isinstance(value, str):
        return None
    if rule.attr.lower() in URL_ATTRIBUTES:
        with contextlib.suppress(ValueError):  # a malformed URL stays as written
            value = urljoin(base_url, value.strip())
    return value


def run_schema(html: str | None, schema: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    """One value (or list) per rule over the page `html`; a missing match is None (or [])."""
    compiled = compile_schema(schema)
    soup = parse(html) if html is not None and compiled else None
    result: dict[str, Any] = {}
    for name, rule, selector in compiled:
        matches = selector.select(soup) if soup is not None else []
        values = (_value(element, rule, base_url) for element in matches)
        if rule.all:
            result[name] = [value for value in values if value is not None]
        else:
            result[name] = next((value for value in values if value is not None), None)
    return result

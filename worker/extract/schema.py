"""The `extract` format: a CSS-selector schema turned into JSON.

A rule is a selector string (the first match's text, whitespace collapsed) or
`{"selector", "attr"?, "all"?}`. Text is an element's text content; an `attr` value is the
attribute as written, except URL attributes (`href`, `src`, ...) which are made absolute. No
match gives null, or [] with `all`. Elements that lack the attribute are skipped: a single rule
takes the first match that has it, `all` lists those that have it.
Selectors are CSS Level 3 plus `:has()`, `:is()` and `:where()` (cssselect, run by lxml).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin

import lxml.etree
import lxml.html
from lxml.cssselect import CSSSelector, SelectorError
from pydantic import ValidationError

from shared.specs import ExtractRule

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


def compile_schema(schema: Mapping[str, Any]) -> list[tuple[str, ExtractRule, CSSSelector]]:
    """Check every rule and compile its selector; raises SchemaError."""
    compiled = []
    for name, raw in schema.items():
        rule = _rule(name, raw)
        try:
            selector = CSSSelector(rule.selector, translator="html")
        except (SelectorError, lxml.etree.XPathError) as exc:
            raise SchemaError(f"extract rule {name!r}: invalid selector: {exc}") from None
        compiled.append((name, rule, selector))
    return compiled


def _value(element: Any, rule: ExtractRule, base_url: str) -> str | None:
    if not isinstance(element, lxml.html.HtmlElement):
        return None  # a comment or processing instruction
    if rule.attr is None:
        return " ".join(element.text_content().split())
    value: str | None = element.get(rule.attr)
    if value is not None and rule.attr.lower() in URL_ATTRIBUTES:
        with contextlib.suppress(ValueError):  # a malformed URL stays as written
            value = urljoin(base_url, value.strip())
    return value


def run_schema(
    tree: lxml.html.HtmlElement | None, schema: Mapping[str, Any], base_url: str
) -> dict[str, Any]:
    """One value (or list) per rule; a missing match is None (or [])."""
    result: dict[str, Any] = {}
    for name, rule, selector in compile_schema(schema):
        found = selector(tree) if tree is not None else []
        matches = found if isinstance(found, list) else []
        values = (_value(element, rule, base_url) for element in matches)
        if rule.all:
            result[name] = [value for value in values if value is not None]
        else:
            result[name] = next((value for value in values if value is not None), None)
    return result

"""The OpenAPI document, told the limits this process enforces from its settings.

Pydantic writes a field's static bounds; a few limits are operator settings (a job's timeout
may not pass `OUTRIDER_JOB_MAX_TIMEOUT_S`), so the document is adjusted once, when first
built, so that generated clients and fuzzers can trust it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from shared.settings import Settings

# Schemas whose `timeout_s` is a job's timeout (or an agent's default for its jobs).
JOB_TIMEOUT_SCHEMAS = ("JobSpec", "AgentCreate", "AgentUpdate")


def _cap(node: dict[str, Any], maximum: float) -> None:
    for option in node.get("anyOf", [node]):
        if option.get("type") in ("number", "integer"):
            option["maximum"] = min(option.get("maximum", maximum), maximum)


# Strings in a request may hold neither NUL nor a lone surrogate (shared/jsonsafe.py: values
# PostgreSQL or JSON clients cannot hold); the document says so of every string it does not
# constrain otherwise.
STORABLE_TEXT = "^[^\\x00\\ud800-\\udfff]*$"
_OWN_FORMS = ("pattern", "enum", "const", "format")


def _storable(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "string" and not any(key in node for key in _OWN_FORMS):
            node["pattern"] = STORABLE_TEXT
        for value in node.values():
            _storable(value)
    elif isinstance(node, list):
        for value in node:
            _storable(value)


def tailor(document: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Write the settings' limits into the generated document (in place; returned)."""
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        if name.endswith(JOB_TIMEOUT_SCHEMAS) and "timeout_s" in schema.get("properties", {}):
            _cap(schema["properties"]["timeout_s"], settings.job_max_timeout_s)
        if name == "CrawlInput" and "limit" in schema.get("properties", {}):
            limit = schema["properties"]["limit"]
            limit["maximum"] = min(
                limit.get("maximum", settings.crawl_max_pages), settings.crawl_max_pages
            )
        _storable(schema)
    return document


def install(app: FastAPI, settings: Settings) -> None:
    """Make `app.openapi()` return the tailored document (built once, as FastAPI does)."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = tailor(generate(), settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

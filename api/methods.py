"""Which methods a path answers, for the `Allow` header of a 405.

Read from the app's OpenAPI paths (the contract), taking the most specific templates that match
the path: literal segments beat parameters, so `/v1/jobs/batch` answers what its own operation
declares, not what `/v1/jobs/{job_id}` does. A method a path does not declare is a 405 with the
declared ones in `Allow`, also when Starlette routed it to a parameter's route first (where
`batch` would fail as a job id: a 422 that should have been a 405).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_CACHE_ATTRIBUTE = "outrider_allowed_methods"


def _templates(app: FastAPI) -> list[tuple[tuple[str | None, ...], str, frozenset[str]]]:
    """Per OpenAPI path: its segments (None for a parameter), the template, its methods."""
    cached: list[tuple[tuple[str | None, ...], str, frozenset[str]]] | None = getattr(
        app.state, _CACHE_ATTRIBUTE, None
    )
    if cached is None:
        paths: dict[str, dict[str, Any]] = app.openapi().get("paths", {})
        cached = []
        for template, operations in paths.items():
            segments = tuple(
                None if part.startswith("{") else part for part in template.strip("/").split("/")
            )
            methods = frozenset(m.upper() for m in operations if m in _METHODS)
            cached.append((segments, template, methods))
        setattr(app.state, _CACHE_ATTRIBUTE, cached)
    return cached


def declared(app: FastAPI, path: str) -> tuple[set[str], set[str]] | None:
    """(the most specific OpenAPI templates matching `path`, the methods they declare); None
    if the path is not in the contract."""
    parts = tuple(path.strip("/").split("/"))
    best: list[tuple[str, frozenset[str]]] = []
    best_score = -1
    for segments, template, methods in _templates(app):
        if len(segments) != len(parts):
            continue
        if any(s is not None and s != p for s, p in zip(segments, parts, strict=True)):
            continue
        if any(s is None and not p for s, p in zip(segments, parts, strict=True)):
            continue
        score = sum(s is not None for s in segments)
        if score > best_score:
            best, best_score = [(template, methods)], score
        elif score == best_score:
            best.append((template, methods))
    if not best:
        return None
    return {t for t, _ in best}, {m for _, ms in best for m in ms}


def allow_header(methods: set[str]) -> str:
    return ", ".join(sorted(methods))

"""What the page engines share after extraction: the formats to parse, and the `json` format.

A `json` format needs the page's Markdown: it is parsed even when not asked for, handed to the
language model (worker/llm.py), then left out of the result. The result gets `json` (the
schema-valid value) and `usage` (the tokens).
"""

from __future__ import annotations

from typing import Any

from shared.specs import FetchInput
from worker.engines.base import EngineContext
from worker.llm import extract_json


def parse_formats(spec: FetchInput) -> list[str]:
    """The named formats to extract: those asked for, and `markdown` for a `json` format."""
    names = spec.output_formats
    if spec.json_format is not None and "markdown" not in names:
        names = [*names, "markdown"]
    return names


async def finish_formats(
    ctx: EngineContext, spec: FetchInput, result: dict[str, Any]
) -> dict[str, Any]:
    """Run the `json` format, if asked for, over the extracted Markdown."""
    fmt = spec.json_format
    if fmt is None:
        return result
    await ctx.progress("extracting_json")
    metadata = result.get("metadata") or {}
    url = str(metadata.get("final_url") or spec.url)
    value, usage = await extract_json(ctx, fmt, str(result.get("markdown") or ""), url)
    if "markdown" not in spec.output_formats:
        result.pop("markdown", None)
    return {**result, "json": value, "usage": usage}

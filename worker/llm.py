"""The `json` format: a page's Markdown into a JSON Schema, by a language model.

Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp's server, Ollama):
`POST {OUTRIDER_LLM_BASE_URL}/chat/completions` with `OUTRIDER_LLM_MODEL`, temperature 0 and
`response_format: {"type": "json_object"}`. Decisions:
- The call is a request like any other: the egress policy judges the endpoint, and it goes out
  through the job owner's own session (worker/http_client.py). The key is the agent secret
  named by `OUTRIDER_LLM_KEY_SECRET` (sent as `Authorization: Bearer`; no such secret, no
  header), decrypted for this attempt only: never in the job row, Redis, a log or an error.
- In: the page's main-content Markdown cut to `OUTRIDER_LLM_MAX_INPUT_CHARS`, the schema and the
  caller's prompt. Out: the answer's JSON (a ```json fence is tolerated), validated against the
  schema with `jsonschema`. An invalid answer is sent back once with the validation error; a
  second invalid one fails `extraction_invalid` (not retried).
- The endpoint's failures are `llm_error`: retried for 408/425/429/5xx (Retry-After honoured),
  connection errors and unreadable answers; not for other 4xx (a wrong key or model).
- `usage` adds up the calls' `prompt_tokens`, `completion_tokens` and `total_tokens`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
from jsonschema import validators

from shared.job_errors import JobErrorCode, is_retryable_status
from shared.jsonsafe import parse_json
from shared.logging import get_logger
from shared.specs import JsonFormat
from worker.bodies import read_capped
from worker.engines.base import EngineContext
from worker.retry import JobError, parse_retry_after

log = get_logger(__name__)

ANSWER_MAX_BYTES = 4 * 1024 * 1024
USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)
SYSTEM = (
    "You extract data from a web page into JSON. Answer with one JSON value that validates "
    "against this JSON Schema, and nothing else:\n{schema}"
)
DEFAULT_PROMPT = "Extract the data the schema describes from this page."


def _messages(fmt: JsonFormat, markdown: str, url: str, limit: int) -> list[dict[str, str]]:
    schema = json.dumps(fmt.json_schema, ensure_ascii=False)
    page = markdown[:limit]
    task = fmt.prompt or DEFAULT_PROMPT
    return [
        {"role": "system", "content": SYSTEM.format(schema=schema)},
        {"role": "user", "content": f"{task}\n\nPage: {url}\n\n{page}"},
    ]


def _llm_error(
    message: str, *, retryable: bool, retry_after_s: float | None = None, **details: Any
) -> JobError:
    return JobError(
        JobErrorCode.LLM_ERROR,
        message,
        retryable=retryable,
        retry_after_s=retry_after_s,
        details=details or None,
    )


async def _complete(ctx: EngineContext, messages: list[dict[str, str]]) -> dict[str, Any]:
    settings = ctx.settings
    url = ctx.policy.check_url(f"{(settings.llm_base_url or '').rstrip('/')}/chat/completions")
    headers = {"Content-Type": "application/json"}
    key = ctx.secrets.get(settings.llm_key_secret)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    body = {
        "model": settings.llm_model,
        "messages": messages,
        "temperature": 0,
        "response_format": {"type": "json_object"},
    }
    timeout = aiohttp.ClientTimeout(total=ctx.time_left(settings.llm_timeout_s))
    async with ctx.http.post(
        url, json=body, headers=headers, timeout=timeout, allow_redirects=False
    ) as response:
        if not 200 <= response.status < 300:
            raise _llm_error(
                f"The language model's endpoint answered {response.status}.",
                retryable=is_retryable_status(response.status),
                retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
                status=response.status,
            )
        raw = await read_capped(response, ANSWER_MAX_BYTES)
    parsed = parse_json(raw.data.decode("utf-8", "replace"))
    if raw.truncated or parsed.error or not isinstance(parsed.value, dict):
        raise _llm_error("The language model's answer is not a chat completion.", retryable=True)
    return parsed.value


def _content(completion: dict[str, Any]) -> str:
    try:
        content = completion["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise _llm_error("The chat completion has no message.", retryable=True) from None
    return str(content or "")


def _usage(total: dict[str, int], completion: dict[str, Any]) -> None:
    usage = completion.get("usage")
    if isinstance(usage, dict):
        for name in USAGE_FIELDS:
            value = usage.get(name)
            if isinstance(value, int):
                total[name] = total.get(name, 0) + value


def _problem(fmt: JsonFormat, content: str) -> tuple[Any, str | None]:
    """The answer's value, and what is wrong with it (None when it validates)."""
    match = _FENCE.match(content)
    parsed = parse_json(match.group(1) if match else content)
    if parsed.error:
        return None, f"the answer is not JSON ({parsed.error})"
    validator = validators.validator_for(fmt.json_schema)(fmt.json_schema)
    error = next(iter(validator.iter_errors(parsed.value)), None)
    if error is None:
        return parsed.value, None
    where = "/".join(str(part) for part in error.absolute_path) or "(root)"
    return parsed.value, f"at {where}: {error.message}"


async def extract_json(
    ctx: EngineContext, fmt: JsonFormat, markdown: str, url: str
) -> tuple[Any, dict[str, int]]:
    """The schema-valid value and the tokens used; raises JobError (`extraction_invalid`,
    `llm_error`, `blocked_destination`)."""
    messages = _messages(fmt, markdown, url, ctx.settings.llm_max_input_chars)
    usage: dict[str, int] = {}
    problem = None
    for round_ in (1, 2):
        completion = await _complete(ctx, messages)
        _usage(usage, completion)
        content = _content(completion)
        value, problem = _problem(fmt, content)
        if problem is None:
            log.info("llm.extracted", rounds=round_, tokens=usage.get("total_tokens"))
            return value, usage
        messages = [
            *messages,
            {"role": "assistant", "content": content},
            {
                "role": "user",
                "content": f"That answer is invalid: {problem}. Answer again with only JSON "
                "that validates against the schema.",
            },
        ]
    raise JobError(
        JobErrorCode.EXTRACTION_INVALID,
        f"The language model's answer does not fit the schema: {problem}",
        retryable=False,
        details={"usage": usage},
    )

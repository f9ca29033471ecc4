"""Routes that parse their own parameters: for the hottest path, `POST /v1/jobs`.

FastAPI's parameter machinery costs about 60,000 CPU instructions per declared parameter or
dependency on every request (its dependency cache keys and scope checks are recomputed each
time): on the submit route it was a third of the API's own work. A direct route takes only the
`Request` and parses its body and headers here, with the same pydantic types and Python's JSON
parser, as FastAPI does. It raises the errors FastAPI would (so clients see the same 400s and
422s) and declares the same OpenAPI through `openapi_extra` (built by `documented`).
"""

from __future__ import annotations

import email.message
import json
from typing import Any, TypeVar

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

T = TypeVar("T")

REF_TEMPLATE = "#/components/schemas/{model}"


def _is_json(content_type: str | None) -> bool:
    """FastAPI's test (strict content type): `application/json` or `application/*+json`."""
    if content_type == "application/json":
        return True
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _located(exc: ValidationError, *where: str | int) -> list[dict[str, Any]]:
    return [{**error, "loc": (*where, *error["loc"])} for error in exc.errors()]


async def json_body(request: Request, adapter: TypeAdapter[T]) -> T:
    """The JSON body, validated, with FastAPI's errors for a body parameter: 400
    `invalid_json` if it does not parse, 400 `bad_request` if Python's parser gives up (digit
    limit, nesting), 422 if it is not valid (`loc` starts with "body")."""
    body = await request.body()
    if not body:
        missing = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        raise RequestValidationError([missing], body=body)
    value: Any = body  # not JSON by its content type: refused by validation, as FastAPI does
    if _is_json(request.headers.get("content-type")):
        try:
            value = json.loads(body)
        except json.JSONDecodeError as exc:
            error = {
                "type": "json_invalid",
                "loc": ("body", exc.pos),
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": exc.msg},
            }
            raise RequestValidationError([error], body=exc.doc) from None
        except (ValueError, RecursionError) as exc:
            raise HTTPException(400, "There was an error parsing the body") from exc
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise RequestValidationError(_located(exc, "body"), body=value) from None


def header(request: Request, name: str, adapter: TypeAdapter[T]) -> T | None:
    """An optional header, validated by `adapter` (422 with `loc` ["header", name])."""
    return _validated(request.headers.get(name), adapter, "header", name)


def query(request: Request, name: str, adapter: TypeAdapter[T]) -> T | None:
    """An optional query parameter, validated by `adapter` (422 with `loc` ["query", name])."""
    return _validated(request.query_params.get(name), adapter, "query", name)


def _validated(value: str | None, adapter: TypeAdapter[T], where: str, name: str) -> T | None:
    if value is None:
        return None
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise RequestValidationError(_located(exc, where, name)) from None


def documented(
    body: TypeAdapter[Any],
    headers: dict[str, tuple[TypeAdapter[Any], str]],
    security_scheme: str,
    query: dict[str, tuple[TypeAdapter[Any], str]] | None = None,
) -> dict[str, Any]:
    """The OpenAPI a direct route would have had from its declared parameters.

    The body's models are referenced, not copied: they are components already (the batch
    route declares the same specs), and tests/api/test_openapi.py checks every `$ref`."""
    schema = body.json_schema(ref_template=REF_TEMPLATE)
    schema.pop("$defs", None)
    where = [("query", params) for params in [query or {}]] + [("header", headers)]
    return {
        "security": [{security_scheme: []}],
        "parameters": [
            {
                "name": name,
                "in": place,
                "required": False,
                "schema": adapter.json_schema(ref_template=REF_TEMPLATE),
                "description": description,
            }
            for place, params in where
            for name, (adapter, description) in params.items()
        ],
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
    }

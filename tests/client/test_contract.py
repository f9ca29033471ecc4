"""The client's models and retries, checked without services: against the API's OpenAPI
document, and against a fake transport."""

from __future__ import annotations

import sys
import tomllib
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

import outrider_client
from api.app import create_app
from outrider_client import ConflictError, Outrider, QuotaExceededError, UnavailableError
from outrider_client.models import ANSWER_MODELS
from shared import __version__
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def schemas() -> dict[str, Any]:
    spec = create_app(Settings(secret_key="contract")).openapi()  # what /openapi.json serves
    components: dict[str, Any] = spec["components"]["schemas"]
    return components


@pytest.mark.parametrize("model", ANSWER_MODELS, ids=lambda model: model.__name__)
def test_each_model_has_the_fields_of_its_openapi_schema(
    model: Any, schemas: dict[str, Any]
) -> None:
    schema = schemas[model.openapi_name]
    assert set(model.model_fields) == set(schema["properties"])
    required = {name for name, field in model.model_fields.items() if field.is_required()}
    assert required == set(schema.get("required", []))


def test_every_answer_schema_of_the_api_has_a_model(schemas: dict[str, Any]) -> None:
    spec = create_app(Settings(secret_key="contract")).openapi()
    answered = set()
    for operations in spec["paths"].values():
        for operation in operations.values():
            for status, response in operation["responses"].items():
                ref = response.get("content", {}).get("application/json", {}).get("schema", {})
                if status.startswith("2") and "$ref" in ref:
                    answered.add(ref["$ref"].rsplit("/", 1)[1])
    assert answered <= {model.openapi_name for model in ANSWER_MODELS}


def test_the_client_and_the_api_have_one_version() -> None:
    client_project = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())
    assert client_project["project"]["dependencies"] == ["httpx>=0.27,<1", "pydantic>=2.7,<3"]
    assert outrider_client.__version__ == __version__
    assert (ROOT / "client/outrider_client/VERSION").read_text().strip() == __version__


def test_the_client_imports_only_httpx_pydantic_and_the_standard_library() -> None:
    import ast

    allowed = {"httpx", "pydantic", "outrider_client", *sys.stdlib_module_names}
    for path in (ROOT / "client" / "outrider_client").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] in allowed, (path.name, name)


def job_json(job_id: str) -> dict[str, Any]:
    return {
        "id": job_id,
        "kind": "http",
        "status": "queued",
        "input": {"url": "http://example.com/"},
        "result": None,
        "error": None,
        "attempts": 0,
        "max_attempts": 3,
        "timeout_s": 30.0,
        "agent_id": str(uuid.uuid4()),
        "created_at": "2026-01-01T00:00:00Z",
        "started_at": None,
        "finished_at": None,
    }


def unavailable() -> httpx.Response:
    body = {"error": {"code": "service_unavailable", "message": "down", "details": None}}
    return httpx.Response(503, json=body, headers={"Retry-After": "0"})


def test_a_503_is_retried_with_the_same_idempotency_key() -> None:
    seen: list[httpx.Request] = []
    job_id = str(uuid.uuid4())

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return unavailable() if len(seen) < 3 else httpx.Response(202, json=job_json(job_id))

    with Outrider("http://api", "key", transport=httpx.MockTransport(answer)) as client:
        job = client.submit({"kind": "http", "input": {"url": "http://example.com/"}})
    assert str(job.id) == job_id
    keys = {request.headers["Idempotency-Key"] for request in seen}
    assert len(seen) == 3
    assert len(keys) == 1
    assert seen[0].headers["Authorization"] == "Bearer key"


def test_503_after_the_retries_raises_with_its_code() -> None:
    calls = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return unavailable()

    client = Outrider("http://api", "key", max_retries=2, transport=httpx.MockTransport(answer))
    with pytest.raises(UnavailableError) as caught:
        client.get_job(uuid.uuid4())
    assert (caught.value.code, caught.value.status_code, len(calls)) == (
        "service_unavailable",
        503,
        3,
    )


def test_a_quota_refusal_is_not_retried_and_says_when_to_come_back() -> None:
    calls = []
    body = {"error": {"code": "quota_exceeded", "message": "m", "details": {"quota": "queued"}}}

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(429, json=body, headers={"Retry-After": "5"})

    client = Outrider("http://api", "key", transport=httpx.MockTransport(answer))
    with pytest.raises(QuotaExceededError) as caught:
        client.submit({"kind": "http", "input": {"url": "http://example.com/"}})
    assert (caught.value.code, caught.value.retry_after, len(calls)) == ("quota_exceeded", 5, 1)


def test_an_error_keeps_the_apis_code_and_details() -> None:
    body = {"error": {"code": "idempotency_conflict", "message": "m", "details": {"job_id": "x"}}}
    transport = httpx.MockTransport(lambda request: httpx.Response(409, json=body))
    client = Outrider("http://api", "key", transport=transport)
    with pytest.raises(ConflictError) as caught:
        client.submit({"kind": "http", "input": {}}, idempotency_key="k")
    assert caught.value.code == "idempotency_conflict"
    assert caught.value.details == {"job_id": "x"}


def test_url_and_key_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTRIDER_URL", "http://elsewhere:9000/")
    monkeypatch.setenv("OUTRIDER_API_KEY", "from-env")
    client = Outrider()
    assert (client.url, client.key) == ("http://elsewhere:9000", "from-env")

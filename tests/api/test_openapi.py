"""The OpenAPI document: declared error responses, and a schemathesis run against the app.

The schemathesis run is synchronous: schemathesis drives the ASGI app from its own event-loop
thread and runs the app's lifespan there (so the engine and Redis client live on that loop).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.core.result import Ok
from schemathesis.generation.drivers import CoverageGenerator
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.generation.meta import CoverageScenario
from schemathesis.generation.overrides import Override
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from shared.settings import Settings
from tests.helpers import http_job

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}
# Not `negative_data_rejection`: the API is lenient where pydantic is (a query datetime may
# be a Unix timestamp, `created_after=12`), which that check counts as accepting bad data.
# The stateful checks (`use_after_free`, `ensure_resource_availability`) need a stateful run.
# `positive_data_acceptance` runs on the coverage phase's cases (every field's boundaries, each
# constraint the schema states); random fuzzing still finds what JSON Schema cannot state:
# NUL inside free-form JSON (a `json` format's schema, an `http` job's `json`), more than one
# `json` format in `formats`.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    missing_required_header,
    unsupported_method,
    allow_header_conformance,
    ignored_auth,
]
COVERAGE_CHECKS = [*CHECKS, positive_data_acceptance]
MAX_EXAMPLES = 25
# Schemathesis' coverage phase (boundary values of every parameter and body field, each
# required part left out, undeclared methods): its cases of an operation, up to this many per
# operation besides the undeclared methods, which all run.
COVERAGE_CASES = 25


async def openapi(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec: dict[str, Any] = response.json()
    return spec


async def test_v1_routes_declare_their_errors(client: httpx.AsyncClient) -> None:
    spec = await openapi(client)
    operations = [
        (method, path, operation)
        for path, item in spec["paths"].items()
        if path.startswith("/v1/")
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]
    assert len(operations) >= 12, [op[:2] for op in operations]
    for method, path, operation in operations:
        responses = operation["responses"]
        where = f"{method.upper()} {path}"
        assert "401" in responses, where
        assert "503" in responses, where
        takes_input = operation.get("parameters") or operation.get("requestBody")
        assert not takes_input or "422" in responses or "400" in responses, where
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (where, status)
        assert operation.get("security"), f"{where} does not declare its bearer auth"


async def test_error_body_schema_is_the_documented_shape(client: httpx.AsyncClient) -> None:
    schemas = (await openapi(client))["components"]["schemas"]
    error_body = schemas["ErrorBody"]
    assert error_body["required"] == ["error"]
    detail = schemas[error_body["properties"]["error"]["$ref"].rsplit("/", 1)[1]]
    assert set(detail["properties"]) == {"code", "message", "details"}
    assert set(detail["required"]) >= {"code", "message"}


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


async def test_every_reference_resolves(client: httpx.AsyncClient) -> None:
    spec = await openapi(client)
    schemas = spec["components"]["schemas"]
    found = refs(spec["paths"])
    assert "#/components/schemas/HttpJobSpec" in found
    for ref in found:
        assert ref.rsplit("/", 1)[1] in schemas, ref


async def test_submit_documents_what_it_parses_itself(client: httpx.AsyncClient) -> None:
    """POST /v1/jobs parses its own parameters (api/direct.py): its OpenAPI must still
    declare the body, the `wait` query, the Idempotency-Key header and the bearer auth."""
    operation = (await openapi(client))["paths"]["/v1/jobs"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert operation["requestBody"]["required"] is True
    assert body["discriminator"]["propertyName"] == "kind"
    assert set(body["discriminator"]["mapping"]) == {
        "http",
        "fetch",
        "render",
        "scrape",
        "crawl",
        "map",
    }
    wait, key = operation["parameters"]
    assert (wait["name"], wait["in"], wait["required"]) == ("wait", "query", False)
    assert (wait["schema"]["minimum"], wait["schema"]["maximum"]) == (0, 60)
    assert (key["name"], key["in"], key["required"]) == ("Idempotency-Key", "header", False)
    assert key["schema"]["maxLength"] == 200
    assert operation["security"] == [{"HTTPBearer": []}]
    for status in ("200", "202"):
        assert operation["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/JobOut"
        }


def fuzz(
    operation: Any,
    mode: schemathesis.GenerationMode,
    headers: dict[str, str],
    statuses: Counter[tuple[str, int]],
) -> None:
    """Run generated cases of one operation through the checks (raises on the first failure)."""

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    def run(case: Any) -> None:
        if isinstance(case.query, dict) and isinstance(case.query.get("wait"), int | float):
            case.query["wait"] = min(case.query["wait"], 0.2)  # a valid wait, kept short
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        statuses[operation.label, response.status_code] += 1

    run()


def cover(operation: Any, headers: dict[str, str], failures: list[str]) -> int:
    """Run the coverage phase's cases of one operation through the checks; returns how many."""
    generator = CoverageGenerator(
        operation=operation,
        generation_modes=[
            schemathesis.GenerationMode.POSITIVE,
            schemathesis.GenerationMode.NEGATIVE,
        ],
        generation_config=operation.schema.config.generation_for(
            operation=operation, phase="coverage"
        ),
        auth_storage=None,
        override=Override(query={}, headers={}, cookies={}, path_parameters={}, body={}),
        feedback=FeedbackSources(),
    )
    ran = others = 0
    for case in generator:
        data = case.meta.phase.data if case.meta else None
        if getattr(data, "scenario", None) != CoverageScenario.UNSPECIFIED_HTTP_METHOD:
            others += 1
            if others > COVERAGE_CASES:
                continue
        ran += 1
        try:
            case.call_and_validate(headers=headers, checks=COVERAGE_CHECKS)
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{operation.label} [coverage]: {str(exc)[:1500]}")
    return ran


class Caller:
    """Calls one operation with given data and validates the answer against the schema."""

    def __init__(self, schema: Any, headers: dict[str, str]) -> None:
        self.schema = schema
        self.headers = headers

    def __call__(
        self, method: str, path: str, status: int, body: Any = None, **path_parameters: str
    ) -> Any:
        operation = self.schema[path][method]
        case = operation.Case(
            path_parameters=path_parameters or None,
            body=body if body is not None else NOT_SET,
            media_type="application/json" if body is not None else None,
        )
        response = case.call_and_validate(headers=self.headers, checks=CHECKS)
        assert response.status_code == status, (method, path, response.text)
        return response.json() if response.content else None


def walk_success_paths(call: Caller) -> None:
    """Every operation's success answer conforms (fuzzing rarely produces valid jobs)."""
    url = "http://127.0.0.1:9/x"
    job = call("POST", "/v1/jobs", 202, http_job(url, method="POST", json={"a": [1, None]}))
    call("GET", "/v1/jobs/{job_id}", 200, job_id=job["id"])
    call("GET", "/v1/jobs/{job_id}/attempts", 200, job_id=job["id"])
    call("POST", "/v1/jobs/{job_id}/cancel", 200, job_id=job["id"])
    call("POST", "/v1/jobs/{job_id}/retry", 200, job_id=job["id"])
    call("POST", "/v1/jobs/{job_id}/cancel", 200, job_id=job["id"])
    call("POST", "/v1/jobs/{job_id}/cancel", 409, job_id=job["id"])
    call("POST", "/v1/jobs/batch", 202, {"jobs": [http_job(url), http_job(url)]})
    call("GET", "/v1/jobs", 200)
    agent_body = {
        "name": "st-agent",
        "headers": {"X-A": "1"},
        "user_agent": "ua",
        "timeout_s": 5,
        "max_attempts": 2,
        "backoff_base_s": 0.5,
        "backoff_max_s": 10,
        "host_rate_per_s": 3,
        "host_concurrency": 2,
        "allowed_domains": ["example.com"],
        "blocked_domains": ["bad.example.com"],
        "secrets": {"TOKEN": "value"},
    }
    agent = call("POST", "/v1/agents", 201, agent_body)
    call("POST", "/v1/agents", 409, agent_body)
    call("GET", "/v1/agents/{agent_id}", 200, agent_id=agent["id"])
    call("PATCH", "/v1/agents/{agent_id}", 200, {"user_agent": None}, agent_id=agent["id"])
    call("GET", "/v1/agents", 200)
    call("DELETE", "/v1/agents/{agent_id}", 204, agent_id=agent["id"])
    call("GET", "/v1/agents/{agent_id}", 404, agent_id=agent["id"])


# A valid request to the owner's event stream is answered with a stream that never ends (it
# waits for events, sending a comment every heartbeat): only invalid ones end, with a 4xx. Its
# valid requests are tested in tests/api/test_events.py.
ENDLESS = {"GET /v1/events"}


def modes(label: str) -> tuple[schemathesis.GenerationMode, ...]:
    if label in ENDLESS:
        return (schemathesis.GenerationMode.NEGATIVE,)
    return (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


def test_schemathesis_finds_no_server_errors_or_schema_violations(
    settings: Settings, auth: dict[str, str]
) -> None:
    from api.app import create_app

    app = create_app(settings)
    # Unknown query parameters are ignored (not refused), as in most HTTP APIs: do not send them.
    config = schemathesis.Config.from_dict(
        {"generation": {"allow-extra-parameters": False, "with-security-parameters": False}}
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    failures: list[str] = []
    statuses: Counter[tuple[str, int]] = Counter()
    try:
        walk_success_paths(Caller(schema, auth))
        results = list(schema.get_all_operations())
        assert all(isinstance(result, Ok) for result in results), results
        operations = [result.ok() for result in results if isinstance(result, Ok)]
        assert len(operations) >= 14
        covered = 0
        for operation in operations:
            if operation.label not in ENDLESS:
                covered += cover(operation, auth, failures)
            for mode in modes(operation.label):
                try:
                    fuzz(operation, mode, auth, statuses)
                except hypothesis.errors.Unsatisfiable:
                    continue  # no parameters and no body: nothing to make invalid
                except (Exception, BaseExceptionGroup) as exc:  # collect all, then report
                    failures.append(f"{operation.label} [{mode.value}]: {exc}")
    finally:
        shutdown_lifespans()
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)
    # The run reached the app as an authenticated owner, and got past validation.
    assert not any(status == 401 for _, status in statuses), statuses
    assert statuses["GET /v1/jobs", 200] > 0, statuses
    assert statuses["GET /v1/agents", 200] > 0, statuses
    assert statuses["POST /v1/agents", 201] > 0, statuses
    assert any(status == 422 for _, status in statuses), statuses


async def test_the_document_states_the_timeout_the_api_enforces(
    client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    schemas = (await openapi(client))["components"]["schemas"]
    limit = settings.job_max_timeout_s
    for name in ("HttpJobSpec", "RenderJobSpec", "AgentCreate", "AgentUpdate"):
        (number,) = [o for o in schemas[name]["properties"]["timeout_s"]["anyOf"] if "maximum" in o]
        assert number["maximum"] == limit, name
    url = "http://127.0.0.1:9/x"
    at_limit = await client.post(
        "/v1/jobs", json={**http_job(url), "timeout_s": limit}, headers=auth
    )
    over = await client.post(
        "/v1/jobs", json={**http_job(url), "timeout_s": limit + 1}, headers=auth
    )
    agent = await client.post(
        "/v1/agents", json={"name": "slow", "timeout_s": limit + 1}, headers=auth
    )
    assert at_limit.status_code == 202, at_limit.text
    for refused in (over, agent):
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "timeout_too_long"


async def test_a_405_allows_what_the_path_declares(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    spec = await openapi(client)
    some_id = "0b6f7c52-3c3a-4b8e-9d8e-0f5f7a1c2d3e"
    cases = {
        ("PUT", "/v1/jobs"): "/v1/jobs",
        ("OPTIONS", f"/v1/agents/{some_id}"): "/v1/agents/{agent_id}",
        ("GET", "/v1/jobs/batch"): "/v1/jobs/batch",  # not a job id
        ("GET", "/v1/jobs/retry"): "/v1/jobs/retry",
        ("DELETE", "/v1/jobs/retry"): "/v1/jobs/retry",
        ("POST", f"/v1/jobs/{some_id}"): "/v1/jobs/{job_id}",
    }
    for (method, path), template in cases.items():
        response = await client.request(method, path, headers=auth)
        declared = sorted(m.upper() for m in spec["paths"][template] if m in HTTP_METHODS)
        assert response.status_code == 405, (method, path, response.text)
        assert response.json()["error"]["code"] == "method_not_allowed"
        assert response.headers["Allow"] == ", ".join(declared), (method, path)
    # A path parameter that is not valid is still the parameter's 422.
    bad_id = await client.get("/v1/jobs/not-a-job", headers=auth)
    assert bad_id.status_code == 422

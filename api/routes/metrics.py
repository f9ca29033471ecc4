"""GET /metrics: Prometheus text exposition (api/metrics.py), outside the OpenAPI contract.

Open unless OUTRIDER_METRICS_TOKEN is set; then it needs `Authorization: Bearer <token>`
(API keys do not open it: a scraper's credential is not an owner's).
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4

from api.deps import StateDep
from api.metrics import ApiMetrics
from shared.errors import Unauthorized

router = APIRouter()


def _check_token(request: Request, expected: str) -> None:
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(
        presented.strip().encode(), expected.encode()
    ):
        raise Unauthorized("Send `Authorization: Bearer <OUTRIDER_METRICS_TOKEN>`.")


def _metrics_of(request: Request) -> ApiMetrics:
    # One per app (its database gauges' cache), made on the first scrape.
    found: ApiMetrics | None = getattr(request.app.state, "metrics", None)
    if found is None:
        found = request.app.state.metrics = ApiMetrics()
    return found


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, state: StateDep) -> Response:
    token = state.settings.metrics_token
    if token is not None:
        _check_token(request, token.get_secret_value())
    body = await _metrics_of(request).exposition(state)
    return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)

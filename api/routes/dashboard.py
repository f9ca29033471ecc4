"""The web dashboard: a small static front end (api/dashboard/) served under strict headers.

The page holds no data and no secret: it asks for an API key, keeps it in sessionStorage and
calls the same `/v1` API as any client, with `Authorization: Bearer` (never a URL, never a
cookie). The files are read once at import, so a broken install fails at start, not per request.
Not in the OpenAPI document: these routes are not part of the API.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request, Response

from shared.errors import NotFound

router = APIRouter(include_in_schema=False)

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboard"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def _load(directory: Path) -> dict[str, Asset]:
    assets = {}
    for path in sorted(directory.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        assets[path.name] = Asset(body, content_type, etag)
    return assets


ASSETS = _load(DASHBOARD_DIR)
PAGE = ASSETS.pop("index.html")


def _respond(asset: Asset, request: Request, cache_control: str) -> Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": cache_control, "ETag": asset.etag}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else asset.body
    response = Response(body, media_type=asset.content_type, headers=headers)
    response.headers["Content-Length"] = str(len(asset.body))
    return response


@router.api_route("/dashboard", methods=["GET", "HEAD"])
async def dashboard_page(request: Request) -> Response:
    """The dashboard's single page (never cached: it names the assets of this version)."""
    return _respond(PAGE, request, "no-store")


@router.api_route("/dashboard/static/{name}", methods=["GET", "HEAD"])
async def dashboard_asset(name: str, request: Request) -> Response:
    """A script, style sheet or icon of the dashboard; revalidated by ETag."""
    asset = ASSETS.get(name)
    if asset is None:
        raise NotFound("No such dashboard file.")
    return _respond(asset, request, "no-cache")

"""A loopback site for the session, locale and stealth tests (no tests here).

- `/login` (GET): a form; POST sets `sid` (HttpOnly) and sends the browser to `/members`.
  The form's page also writes `theme=dark` into localStorage when submitted.
- `/members`: members-only content with a valid `sid`, else "Please log in"; every visit
  counts up a `visits` cookie (so a job that only reads still changes the session).
- `/storage`: shows what localStorage holds (rendered only).
- `/hold?ms=`: records when each request started and ended (overlap checks).
- `/whoami`: what the request said (Accept-Language, User-Agent, cookies), as JSON.
- `/place`: navigator.language, Intl's time zone and the geolocation, written into the DOM.
- `/checks`: the usual headless checks, their verdicts written into `#out` as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.helpers import serve_aiohttp

PASSWORD = "open sesame"


@dataclass
class ReachSite:
    base_url: str = ""
    tokens: set[str] = field(default_factory=set)
    holds: list[tuple[float, float, str]] = field(default_factory=list)
    seen: dict[str, list[dict[str, str]]] = field(default_factory=lambda: defaultdict(list))

    def url(self, path: str) -> str:
        return self.base_url + path


def _page(body: str, title: str = "page", script: str = "") -> web.Response:
    html = (
        f"<!doctype html><html><head><title>{title}</title></head><body>{body}"
        f"<script>{script}</script></body></html>"
    )
    return web.Response(text=html, content_type="text/html")


LOGIN_FORM = """
<h1>Sign in</h1>
<form method="post" action="/login" onsubmit="localStorage.setItem('theme', 'dark')">
  <input id="user" name="user"> <input id="pass" name="pass" type="password">
  <button id="go" type="submit">Sign in</button>
</form>
"""

STORAGE_SCRIPT = """
document.getElementById('theme').textContent =
  'theme: ' + (localStorage.getItem('theme') || 'none');
"""

PLACE_SCRIPT = """
const out = {language: navigator.language, languages: navigator.languages,
             timezone: Intl.DateTimeFormat().resolvedOptions().timeZone};
navigator.geolocation.getCurrentPosition(
  (p) => { out.latitude = p.coords.latitude; out.longitude = p.coords.longitude; done(); },
  (e) => { out.geolocation_error = e.message || String(e.code); done(); },
  {timeout: 3000});
function done() {
  document.getElementById('out').textContent = JSON.stringify(out);
  const mark = document.createElement('p'); mark.id = 'done'; mark.textContent = 'done';
  document.body.appendChild(mark);
}
"""

# What bot detectors commonly look at in a headless Chromium. Each check is `true` (looks like a
# person's browser), `false` (gives the automation away) or `null` (not measurable here: WebGL
# without a GPU). Everything read is reported too, so a failure says what was seen.
CHECKS_SCRIPT = """
(async () => {
  const seen = {}, checks = {};
  const ua = navigator.userAgent;
  seen.user_agent = ua;
  seen.platform = navigator.platform;
  seen.webdriver = navigator.webdriver;
  checks.webdriver = navigator.webdriver === false || navigator.webdriver === undefined;
  seen.plugins = navigator.plugins.length;
  checks.plugins = navigator.plugins.length > 0;
  seen.languages = navigator.languages;
  checks.languages = navigator.languages.length > 1
    && navigator.languages[0] === navigator.language;
  checks.chrome = typeof window.chrome === 'object' && window.chrome !== null
    && typeof window.chrome.loadTimes === 'function' && typeof window.chrome.csi === 'function'
    && typeof window.chrome.app === 'object';
  try {
    const status = await navigator.permissions.query({name: 'notifications'});
    seen.permission_query = status.state;
    seen.notification_permission = Notification.permission;
    checks.permissions = !(Notification.permission === 'denied' && status.state === 'prompt');
  } catch (e) { seen.permission_error = String(e); checks.permissions = false; }
  const os = /Windows/.test(ua) ? 'Win' : /Macintosh/.test(ua) ? 'Mac'
    : /Android/.test(ua) ? 'Linux arm' : /Linux|X11|CrOS/.test(ua) ? 'Linux' : '?';
  checks.ua_platform = navigator.platform.startsWith(os);
  checks.headless_ua = !/HeadlessChrome/.test(ua);
  const brands = navigator.userAgentData ? navigator.userAgentData.brands.map(b => b.brand) : [];
  seen.brands = brands;
  checks.headless_brand = !brands.includes('HeadlessChrome');
  const canvas = document.createElement('canvas');
  const gl = canvas.getContext('webgl') || canvas.getContext('experimental-webgl');
  if (!gl) {
    seen.webgl = 'unavailable';
    checks.webgl = null;
  } else {
    const info = gl.getExtension('WEBGL_debug_renderer_info');
    const vendor = info ? gl.getParameter(info.UNMASKED_VENDOR_WEBGL) : gl.getParameter(gl.VENDOR);
    const renderer = info
      ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
    seen.webgl = {vendor, renderer};
    checks.webgl = !/SwiftShader|llvmpipe|Mesa OffScreen/i.test(renderer + ' ' + vendor);
  }
  document.getElementById('out').textContent = JSON.stringify({checks, seen});
  const mark = document.createElement('p'); mark.id = 'done'; mark.textContent = 'done';
  document.body.appendChild(mark);
})();
"""


def _app(site: ReachSite) -> web.Application:
    async def note(request: web.Request) -> None:
        site.seen[request.path].append(
            {
                "accept-language": request.headers.get("Accept-Language", ""),
                "user-agent": request.headers.get("User-Agent", ""),
                "cookie": request.headers.get("Cookie", ""),
                "sec-ch-ua": request.headers.get("Sec-CH-UA", ""),
            }
        )

    async def login_form(request: web.Request) -> web.Response:
        await note(request)
        return _page(LOGIN_FORM, "login")

    async def login(request: web.Request) -> web.Response:
        await note(request)
        form = await request.post()
        if form.get("pass") != PASSWORD:
            return _page("<h1>Wrong password</h1>", "login")
        token = secrets.token_hex(8)
        site.tokens.add(token)
        response = web.Response(status=303, headers={"Location": "/members"})
        response.set_cookie("sid", token, path="/", httponly=True, samesite="Lax")
        return response

    async def members(request: web.Request) -> web.Response:
        await note(request)
        visits = int(request.cookies.get("visits", "0") or 0) + 1
        if request.cookies.get("sid") in site.tokens:
            body = f"<h1 id='welcome'>Members only: welcome back</h1><p>visit {visits}</p>"
        else:
            body = "<h1>Please log in</h1><p>This page is for members.</p>"
        response = _page(body, "members")
        response.set_cookie("visits", str(visits), path="/", max_age=3600)
        return response

    async def storage(request: web.Request) -> web.Response:
        await note(request)
        return _page("<p id='theme'>theme: unknown</p>", "storage", STORAGE_SCRIPT)

    async def hold(request: web.Request) -> web.Response:
        started = time.monotonic()
        await asyncio.sleep(int(request.query.get("ms", "300")) / 1000)
        site.holds.append((started, time.monotonic(), request.query.get("tag", "")))
        return _page("<p>held</p>", "hold")

    async def whoami(request: web.Request) -> web.Response:
        await note(request)
        return web.json_response(dict(site.seen[request.path][-1]))

    async def place(request: web.Request) -> web.Response:
        await note(request)
        return _page("<pre id='out'>waiting</pre>", "place", PLACE_SCRIPT)

    async def checks(request: web.Request) -> web.Response:
        await note(request)
        return _page("<h1>Checks</h1><pre id='out'>running</pre>", "checks", CHECKS_SCRIPT)

    app = web.Application()
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_get("/members", members)
    app.router.add_get("/storage", storage)
    app.router.add_get("/hold", hold)
    app.router.add_get("/whoami", whoami)
    app.router.add_get("/place", place)
    app.router.add_get("/checks", checks)
    return app


@contextlib.asynccontextmanager
async def serve_reach_site() -> AsyncIterator[ReachSite]:
    """The site on a free port of 127.0.0.1."""
    site = ReachSite()
    async with serve_aiohttp(_app(site), handler_cancellation=True) as url:
        site.base_url = url
        yield site


def extracted(job: dict[str, Any], name: str = "out") -> Any:
    """The JSON a page wrote into `#out`, from a job's `extract`."""
    assert job["status"] == "succeeded", job
    return json.loads(job["result"]["extract"][name])

"""Helpers of the browser tests (no tests here): the pages they render, a canary, processes.

The site is served on 127.0.0.1 (the only range the browser workers under test may reach); the
canary listens on 127.0.0.2 (forbidden to them) over TCP and UDP and counts every connection
and datagram, whatever protocol a page tries.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import psutil
from aiohttp import web

from tests.conftest import RunWorker
from tests.helpers import serve_aiohttp

CANARY_HOST = "127.0.0.2"
TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


@dataclass
class Canary:
    """Counts whatever reaches 127.0.0.2: TCP connections and UDP datagrams."""

    tcp_port: int = 0
    udp_port: int = 0
    connections: int = 0
    datagrams: int = 0

    @property
    def hits(self) -> int:
        return self.connections + self.datagrams


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, canary: Canary) -> None:
        self.canary = canary

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.canary.datagrams += 1


@dataclass
class Site:
    base_url: str = ""
    canary: Canary = field(default_factory=Canary)
    hits: Counter[str] = field(default_factory=Counter)
    headers: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return self.base_url + path


def _page(body: str, title: str = "page") -> web.Response:
    html = f"<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>"
    return web.Response(text=html, content_type="text/html")


def _attack(canary: Canary) -> str:
    """A page that tries every way out it can think of towards the canary."""
    c, host = canary.tcp_port, CANARY_HOST
    base = f"http://{host}:{c}"
    return f"""
<h1 id="done">still rendered</h1>
<img src="{base}/img.png"><img src="http://127.2:{c}/short.png">
<img src="http://2130706434:{c}/integer.png"><link rel="stylesheet" href="{base}/style.css">
<iframe src="{base}/frame"></iframe><iframe src="/redirect?to={base}/redirected"></iframe>
<iframe name="sink"></iframe>
<form id="f" method="post" action="{base}/form" target="sink"><input name="a" value="b"></form>
<script>
fetch("{base}/fetch").catch(() => {{}});
fetch("http://localhost:{c}/via-name").catch(() => {{}});
const xhr = new XMLHttpRequest(); xhr.open("GET", "{base}/xhr"); xhr.send();
try {{ new WebSocket("ws://{host}:{c}/ws"); }} catch (e) {{}}
try {{ new EventSource("{base}/events"); }} catch (e) {{}}
navigator.sendBeacon("{base}/beacon", "x");
document.getElementById("f").submit();
if (navigator.serviceWorker) navigator.serviceWorker.register("/sw.js").catch(() => {{}});
try {{
  const pc = new RTCPeerConnection({{iceServers: [
    {{urls: "stun:{host}:{canary.udp_port}"}},
    {{urls: "turn:{host}:{c}?transport=tcp", username: "u", credential: "p"}}]}});
  pc.createDataChannel("x");
  pc.createOffer().then(o => pc.setLocalDescription(o));
}} catch (e) {{}}
</script>"""


SPA_TEXT = "The ferry leaves at nine and returns at six. "
NOSCRIPT = (
    "<noscript>You need to enable JavaScript to run this app.</noscript><div id='root'></div>"
)
FILL = "document.getElementById('root').innerHTML = '<h1 id=\"ready\">Harbour</h1><p>' + t + '</p>'"


def _spa(request: web.Request) -> str:
    """An app shell filled after a timer (`/spa?ms=`), after a slow fetch (`/spa?fetch=`), or
    never (`/spa?never=1`: only its <noscript> message has text)."""
    if "never" in request.query:
        return NOSCRIPT + "<script>/* the bundle did not arrive */</script>"
    if "fetch" in request.query:
        script = f"fetch('/api/slow?ms={int(request.query['fetch'])}').then(r => r.json())"
        script += f".then(j => {{ const t = j.text; {FILL}; }});"
    else:
        script = f"setTimeout(() => {{ const t = {SPA_TEXT!r}.repeat(20); {FILL}; }}, "
        script += f"{int(request.query.get('ms', '300'))});"
    return f"{NOSCRIPT}<script>{script}</script>"


def _app(site: Site) -> web.Application:
    async def count(request: web.Request) -> None:
        site.hits[request.path] += 1
        headers = {name.lower(): value for name, value in request.headers.items()}
        site.headers.setdefault(request.path, []).append(headers)

    async def js(request: web.Request) -> web.Response:
        await count(request)
        script = "document.getElementById('out').textContent = ['made', 'by', 'script'].join(' ');"
        return _page(f"<div id='out'>static</div><script>{script}</script>")

    async def late(request: web.Request) -> web.Response:
        await count(request)
        delay_ms = int(request.query.get("ms", "500"))
        script = "setTimeout(() => { const d = document.createElement('p'); d.id = 'late';"
        script += f" d.textContent = 'arrived late'; document.body.appendChild(d); }}, {delay_ms});"
        return _page(f"<p>early</p><script>{script}</script>")

    async def form(request: web.Request) -> web.Response:
        await count(request)
        script = "document.getElementById('go').onclick = () => { document.getElementById("
        script += "'result').textContent = 'hello ' + document.getElementById('name').value; };"
        body = "<input id='name'><button id='go'>go</button><p id='result'>nothing</p>"
        return _page(f"{body}<script>{script}</script>")

    async def images(request: web.Request) -> web.Response:
        await count(request)
        return _page(
            "<img id='i' src='/pixel.png' onload=\"document.title='img-loaded'\" "
            "onerror=\"document.title='img-failed'\">"
        )

    async def third_party(request: web.Request) -> web.Response:
        await count(request)
        return _page(f"<img src='http://localhost:{request.url.port}/pixel.png'>")

    async def pixel(request: web.Request) -> web.Response:
        await count(request)
        return web.Response(body=TINY_PNG, content_type="image/png")

    async def slow(request: web.Request) -> web.Response:
        await count(request)
        await asyncio.sleep(float(request.query.get("s", "1")))
        return _page("<p id='slow'>slow page</p>")

    async def status(request: web.Request) -> web.Response:
        await count(request)
        return web.Response(status=int(request.match_info["code"]), text="status page")

    async def flaky(request: web.Request) -> web.Response:
        await count(request)
        if site.hits[request.path] <= int(request.query.get("fail", "1")):
            return web.Response(status=503, text="try later")
        return _page("<p>recovered</p>")

    async def redirect(request: web.Request) -> web.Response:
        await count(request)
        raise web.HTTPFound(request.query["to"])

    async def attack(request: web.Request) -> web.Response:
        await count(request)
        return _page(_attack(site.canary), title="attack")

    async def service_worker(request: web.Request) -> web.Response:
        await count(request)
        text = f"fetch('http://{CANARY_HOST}:{site.canary.tcp_port}/from-sw');"
        return web.Response(text=text, content_type="application/javascript")

    async def rebind(request: web.Request) -> web.Response:
        await count(request)
        base = f"http://rebind.test:{site.canary.tcp_port}"
        images = "".join(f"<img src='{base}/img{n}.png'>" for n in range(4))
        script = "".join(f"fetch('{base}/fetch{n}').catch(() => {{}});" for n in range(4))
        return _page(f"<p id='here'>rendered</p>{images}<script>{script}</script>")

    async def leave(request: web.Request) -> web.Response:
        await count(request)
        script = "setTimeout(() => { location.href = 'file:///etc/passwd'; }, 50);"
        script += "setTimeout(() => { location.href = 'chrome://version'; }, 100);"
        script += "setTimeout(() => { window.open('view-source:' + location.href); }, 150);"
        link = "<a id='file' href='file:///etc/passwd'>passwords</a>"
        return _page(f"<p id='here'>still here</p>{link}<script>{script}</script>")

    async def spa(request: web.Request) -> web.Response:
        await count(request)
        return _page(_spa(request), title="app")

    async def api_slow(request: web.Request) -> web.Response:
        await count(request)
        await asyncio.sleep(int(request.query["ms"]) / 1000)
        return web.json_response({"text": SPA_TEXT * 20})

    async def html(request: web.Request) -> web.Response:  # a test's own page: ?body=...
        await count(request)
        return _page(request.query["body"])

    async def busy(request: web.Request) -> web.Response:  # changes every 50 ms, forever
        await count(request)
        script = "let n = 0; setInterval(() => { document.getElementById('n').textContent = ++n; }"
        return _page(f"<p>Counting: <span id='n'>0</span></p><script>{script}, 50);</script>")

    async def tall(request: web.Request) -> web.Response:
        await count(request)
        style = "height: 3000px; background: linear-gradient(red, blue)"
        return _page(f"<h1>A tall page</h1><div style='{style}'></div>")

    app = web.Application()
    for path, handler in {
        "/js": js, "/late": late, "/form": form, "/images": images, "/pixel.png": pixel,
        "/slow": slow, "/status/{code}": status, "/flaky/{key}": flaky, "/redirect": redirect,
        "/attack": attack, "/sw.js": service_worker, "/tall": tall, "/leave": leave,
        "/third-party": third_party, "/spa": spa, "/api/slow": api_slow, "/busy": busy,
        "/html": html,
        "/rebind": rebind,
    }.items():  # fmt: skip
        app.router.add_route("*", path, handler)
    return app


@contextlib.asynccontextmanager
async def serve_site() -> AsyncIterator[Site]:
    """The site on 127.0.0.1 and the canary on 127.0.0.2, on free ports."""
    site = Site()
    loop = asyncio.get_running_loop()

    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        site.canary.connections += 1
        writer.close()

    canary_tcp = await asyncio.start_server(on_connect, CANARY_HOST, 0)
    site.canary.tcp_port = canary_tcp.sockets[0].getsockname()[1]
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Datagrams(site.canary), local_addr=(CANARY_HOST, 0)
    )
    site.canary.udp_port = transport.get_extra_info("sockname")[1]
    try:
        async with serve_aiohttp(_app(site), handler_cancellation=True) as url:
            site.base_url = url
            yield site
    finally:
        transport.close()
        canary_tcp.close()


def browser_worker(
    run_worker: RunWorker, **overrides: Any
) -> contextlib.AbstractAsyncContextManager[Any]:
    """A browser worker that may reach 127.0.0.1 only (so 127.0.0.2 is forbidden to it)."""
    settings: dict[str, Any] = {
        "egress_allow_cidrs": ["127.0.0.1/32"],
        "egress_allowed_ports": ["1-65535"],
        "host_rate_per_s": 0,
        **overrides,
    }
    return run_worker(queue="browser", concurrency=4, **settings)


def render_job(url: str, **input_fields: Any) -> dict[str, Any]:
    """A spec for a `render` job (the DOM as `raw_html` unless `formats` say otherwise)."""
    spec: dict[str, Any] = {
        "kind": "render",
        "input": {"url": url, "formats": ["raw_html"], **input_fields},
    }
    return spec


def chromium_processes(root_pid: int | None = None, zombies: bool = False) -> list[psutil.Process]:
    """Chromium processes under `root_pid` (default: this process): running ones, and with
    `zombies` also those that exited but were not reaped."""
    found = []
    with contextlib.suppress(psutil.NoSuchProcess):
        for process in psutil.Process(root_pid or os.getpid()).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                zombie = process.status() == psutil.STATUS_ZOMBIE
                if process.name().startswith("chrom") and (zombies or not zombie):
                    found.append(process)
    return found


def browser_pids(owner_pid: int | None = None) -> set[int]:
    """Main Chromium processes launched by the worker in process `owner_pid` (default: this)."""
    marker = f"--outrider-browser={owner_pid or os.getpid()}-"
    found = {}
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if any(arg.startswith(marker) for arg in process.cmdline()):
                found[process.pid] = process.ppid()
    # A child Chromium forks carries the same command line until it execs: not a browser.
    return {pid for pid, parent in found.items() if parent not in found}

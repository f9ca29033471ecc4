"""A local HTTP server for the benchmarks (one process, uvloop), shared by Outrider and the
baselines of a scenario:

- `/ok` answers at once, `/delay?ms=N` after N ms (JSON);
- `/site/{n}`: article `n` of the generated site (benchmarks/site.py, about 30 KB);
- `/js/{n}`: a page whose content JavaScript creates;
- `/robots.txt`: allows everything (Outrider obeys robots.txt for fetch/render/scrape).

    python -m benchmarks.target_server PORT [SITE_PAGES]
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

from benchmarks.site import ROBOTS_TXT, article, js_page

PAGES = web.AppKey("pages", int)


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def delay(request: web.Request) -> web.Response:
    await asyncio.sleep(int(request.query.get("ms", "100")) / 1000)
    return web.json_response({"ok": True})


def _page_number(request: web.Request) -> int:
    try:
        return int(request.match_info["n"])
    except ValueError:
        raise web.HTTPNotFound() from None


async def site_page(request: web.Request) -> web.Response:
    body = article(_page_number(request), request.app[PAGES])
    return web.Response(body=body, content_type="text/html", charset="utf-8")


async def script_page(request: web.Request) -> web.Response:
    body = js_page(_page_number(request))
    return web.Response(body=body, content_type="text/html", charset="utf-8")


async def robots(request: web.Request) -> web.Response:
    return web.Response(text=ROBOTS_TXT, content_type="text/plain")


def make_app(pages: int = 500) -> web.Application:
    app = web.Application()
    app[PAGES] = pages
    app.router.add_get("/ok", ok)
    app.router.add_get("/delay", delay)
    app.router.add_get("/site/{n}", site_page)
    app.router.add_get("/js/{n}", script_page)
    app.router.add_get("/robots.txt", robots)
    return app


def main() -> None:
    import uvloop

    pages = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    web.run_app(
        make_app(pages),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()

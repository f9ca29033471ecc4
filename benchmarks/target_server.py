"""A local HTTP server for the benchmarks: `/ok` answers at once, `/delay?ms=N` after N ms."""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def delay(request: web.Request) -> web.Response:
    await asyncio.sleep(int(request.query.get("ms", "100")) / 1000)
    return web.json_response({"ok": True})


def main() -> None:
    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/delay", delay)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()

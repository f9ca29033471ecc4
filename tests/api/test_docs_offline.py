"""/docs and /redoc work without internet: every asset they load is served by the API itself."""

from __future__ import annotations

import re

import httpx
import pytest


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_api_docs_load_only_our_own_assets(client: httpx.AsyncClient, page: str) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    html = response.text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assets += re.findall(r"""url: ?["']([^"']+)["']""", html)
    assert assets, html
    assert not [a for a in assets if "//" in a], f"{page} loads from elsewhere: {assets}"
    scripts = [a for a in assets if a.endswith(".js")]
    assert scripts, html
    for asset in assets:
        got = await client.get(asset)
        assert got.status_code == 200, asset
        assert len(got.content) > 0, asset
    # The big bundle is really the viewer, not an error page.
    assert max([len((await client.get(s)).content) for s in scripts]) > 100_000

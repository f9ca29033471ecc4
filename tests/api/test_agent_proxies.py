"""An agent's `proxies` and `proxy_rotation`: what is saved, shown, and refused with which code."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.api.support import assert_error


def agent_body(**profile: Any) -> dict[str, Any]:
    return {"name": f"agent-{uuid.uuid4().hex[:8]}", **profile}


async def test_proxies_are_saved_in_normal_form_and_shown_without_secrets(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    body = agent_body(
        secrets={"proxy-a": f"alice:{password}"},
        proxies=[
            {"url": "HTTP://127.0.0.1:3128", "auth_secret": "proxy-a"},
            {"url": "socks5://127.0.0.1"},
            {"url": "https://[::1]:8443/"},
        ],
        proxy_rotation="sticky_host",
    )
    created = await client.post("/v1/agents", json=body, headers=auth)
    assert created.status_code == 201, created.text
    agent = created.json()
    assert agent["proxies"] == [
        {"url": "http://127.0.0.1:3128", "auth_secret": "proxy-a"},
        {"url": "socks5://127.0.0.1:1080", "auth_secret": None},
        {"url": "https://[::1]:8443", "auth_secret": None},
    ]
    assert agent["proxy_rotation"] == "sticky_host"
    assert password not in created.text

    cleared = await client.patch(
        f"/v1/agents/{agent['id']}", json={"proxies": None, "proxy_rotation": None}, headers=auth
    )
    assert cleared.status_code == 200, cleared.text
    assert (cleared.json()["proxies"], cleared.json()["proxy_rotation"]) == ([], "round_robin")

    plain = await client.post("/v1/agents", json=agent_body(), headers=auth)
    assert (plain.json()["proxies"], plain.json()["proxy_rotation"]) == ([], "round_robin")


@pytest.mark.parametrize(
    ("proxy", "code"),
    [
        ({"url": "ftp://127.0.0.1:21"}, "unsupported_proxy_scheme"),
        ({"url": "socks4://127.0.0.1:1080"}, "unsupported_proxy_scheme"),
        ({"url": "http://alice:pw@127.0.0.1:3128"}, "proxy_credentials_in_url"),
        ({"url": "http://alice@127.0.0.1:3128"}, "proxy_credentials_in_url"),
        ({"url": "http://127.0.0.1:3128/path"}, "invalid_proxy_url"),
        ({"url": "127.0.0.1:3128"}, "invalid_proxy_url"),
        ({"url": "http://10.1.2.3:3128"}, "proxy_forbidden"),
        ({"url": "http://169.254.169.254:80"}, "proxy_forbidden"),
        ({"url": "http://127.0.0.1:3128", "auth_secret": "missing"}, "unknown_secret"),
    ],
)
async def test_a_proxy_that_cannot_be_used_is_refused_at_save_time(
    client: httpx.AsyncClient, auth: dict[str, str], proxy: dict[str, str], code: str
) -> None:
    body = agent_body(secrets={"present": "u:p"}, proxies=[{"url": "http://127.0.0.1:1"}, proxy])
    error = assert_error(await client.post("/v1/agents", json=body, headers=auth), 422, code)
    assert error["details"] == {"index": 1}
    assert "pw@" not in error["message"]

    agent = await client.post("/v1/agents", json=agent_body(), headers=auth)
    patch = await client.patch(
        f"/v1/agents/{agent.json()['id']}", json={"proxies": [proxy]}, headers=auth
    )
    assert_error(patch, 422, code)


async def test_an_unknown_rotation_is_refused(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = agent_body(proxies=[{"url": "http://127.0.0.1:3128"}], proxy_rotation="fastest")
    assert_error(await client.post("/v1/agents", json=body, headers=auth), 422, "validation_error")


async def test_a_secret_a_proxy_names_cannot_be_removed_and_a_new_one_can_be_named(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = agent_body(
        secrets={"proxy-a": "alice:pw"},
        proxies=[{"url": "http://127.0.0.1:3128", "auth_secret": "proxy-a"}],
    )
    agent_id = (await client.post("/v1/agents", json=body, headers=auth)).json()["id"]
    removal = await client.patch(
        f"/v1/agents/{agent_id}", json={"secrets": {"proxy-a": None}}, headers=auth
    )
    assert_error(removal, 422, "unknown_secret")
    kept = (await client.get(f"/v1/agents/{agent_id}", headers=auth)).json()
    assert kept["secret_names"] == ["proxy-a"]  # the refused update changed nothing

    both = await client.patch(
        f"/v1/agents/{agent_id}",
        json={
            "secrets": {"proxy-b": "bob:pw"},
            "proxies": [{"url": "http://127.0.0.1:3129", "auth_secret": "proxy-b"}],
        },
        headers=auth,
    )
    assert both.status_code == 200, both.text
    assert both.json()["proxies"] == [{"url": "http://127.0.0.1:3129", "auth_secret": "proxy-b"}]

"""Whom a failing proxy's answer blames (worker/proxies.py), without services: the proxies'
runs are scripted, and without Redis the picker tries them in order and records its benches."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import pytest

from shared.models import Agent
from shared.proxies import parse_proxy_url
from worker.proxies import ProxyPicker, target_authority
from worker.proxy_tunnel import ProxyFailed, ProxyRoute
from worker.retry import JobError

TARGET = "shop.example:443"
Run = Callable[[ProxyRoute], Awaitable[str]]


def routes(count: int) -> list[ProxyRoute]:
    return [
        ProxyRoute(parse_proxy_url(f"http://proxy-{n}.example:3128"), f"id-{n}")
        for n in range(count)
    ]


def picker(proxies: list[ProxyRoute]) -> ProxyPicker:
    agent = Agent(id=uuid.uuid4(), proxy_rotation="round_robin")
    return ProxyPicker(None, agent, proxies, "shop.example", 60.0, TARGET)


def scripted(outcomes: dict[str, BaseException | str]) -> Run:
    async def run(route: ProxyRoute) -> str:
        outcome = outcomes[route.id]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return run


def unreachable(route: ProxyRoute, target: str = TARGET) -> ProxyFailed:
    return ProxyFailed(route.url, f"it answered CONNECT {target} with 500", 500, target)


def broken(route: ProxyRoute) -> ProxyFailed:
    return ProxyFailed(route.url, "could not connect (Connection refused)")


async def test_a_proxy_that_could_not_reach_a_target_another_reached_is_benched() -> None:
    a, b, c = proxies = routes(3)
    choice = picker(proxies)
    served = await choice.through(scripted({a.id: unreachable(a), b.id: broken(b), c.id: "page"}))
    assert served == (c, "page")
    assert choice.benched == [b, a]  # b at once, a once c reached the target


async def test_an_error_status_from_the_target_is_reaching_it() -> None:
    a, b = proxies = routes(2)
    choice = picker(proxies)
    missing = JobError("http_4xx", "The server answered 404.", retryable=False)
    with pytest.raises(JobError) as raised:
        await choice.through(scripted({a.id: unreachable(a), b.id: missing}))
    assert raised.value is missing
    assert choice.benched == [a]


async def test_when_no_proxy_reaches_the_target_it_is_the_targets_failure() -> None:
    a, b, c = proxies = routes(3)
    choice = picker(proxies)
    with pytest.raises(JobError) as raised:
        await choice.through(
            scripted({a.id: unreachable(a), b.id: broken(b), c.id: unreachable(c)})
        )
    assert (raised.value.code, raised.value.retryable) == ("connection_error", True)
    assert (raised.value.details or {})["unreached"] == [TARGET]
    assert choice.benched == [b]  # only the one that failed by itself


async def test_failures_other_than_the_targets_answer_prove_nothing() -> None:
    """A timeout through the next proxy, or another host that could not be reached (a
    redirect's), blames nobody."""
    a, b = proxies = routes(2)
    choice = picker(proxies)
    with pytest.raises(TimeoutError):
        await choice.through(scripted({a.id: unreachable(a), b.id: TimeoutError()}))
    other = picker(proxies)
    assert await other.through(
        scripted({a.id: unreachable(a, "cdn.example:443"), b.id: "page"})
    ) == (b, "page")
    assert choice.benched == other.benched == []


async def test_every_proxy_failing_by_itself_is_proxy_unavailable() -> None:
    a, b = proxies = routes(2)
    choice = picker(proxies)
    with pytest.raises(JobError) as raised:
        await choice.through(scripted({a.id: broken(a), b.id: broken(b)}))
    assert raised.value.code == "proxy_unavailable"
    assert choice.benched == [a, b]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://Shop.Example/cart", "shop.example:443"),
        ("http://shop.example/", "shop.example:80"),
        ("http://127.0.0.1:8080/x", "127.0.0.1:8080"),
        ("http://[::1]:8080/x", "[::1]:8080"),
        ("not a url", None),
    ],
)
def test_a_jobs_target_is_named_as_its_tunnel_names_it(url: str, expected: str | None) -> None:
    assert target_authority({"url": url}) == expected

"""URL normalization and crawl scope (no services)."""

from __future__ import annotations

import pytest

from shared.urls import Scope, host_key, normalize_url, pattern_problem


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("HTTP://Example.COM:80/a/./b/../c", "http://example.com/a/c"),
        ("https://example.com:443", "https://example.com/"),
        ("https://example.com:8443/x#frag", "https://example.com:8443/x"),
        ("http://example.com/%7Euser/%e2%82%ac", "http://example.com/~user/%E2%82%AC"),
        ("http://example.com/a%2fb", "http://example.com/a%2Fb"),
        ("http://example.com/a b", "http://example.com/a%20b"),
        ("http://example.com/100%", "http://example.com/100%25"),
        ("http://example.com/../../x", "http://example.com/x"),
        ("http://example.com/a/..", "http://example.com/"),
        ("http://example.com/?b=1&a=%7e", "http://example.com/?b=1&a=~"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://example.com.", "http://example.com/"),
    ],
)
def test_one_spelling_per_url(given: str, normal: str) -> None:
    assert normalize_url(given) == normal


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("HTTP://Example.COM./a?b=1", "example.com:80"),
        ("https://example.com", "example.com:443"),
        ("https://user:pw@EXAMPLE.com:8443/x", "example.com:8443"),
        ("http://[::1]:8080/", "[::1]:8080"),
        ("http://bücher.de/", "xn--bcher-kva.de:80"),
        ("ftp://example.com/", None),
        ("not a url", None),
        ("http://example.com:99999/", None),
        ("http://./", None),
    ],
)
def test_host_key(url: str, key: str | None) -> None:
    assert host_key(url) == key


# One host, spelled the ways the egress policy (and so a job's URL) accepts.
SAME_HOST = [
    ["http://[::1]/", "http://[0:0:0:0:0:0:0:1]/", "http://[0::1]:80/", "HTTP://[::0:1]/"],
    [
        "http://127.0.0.1/",
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f.0.0.1:80/",
        "http://0177.0.0.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://\uff11\uff12\uff17.1/",
    ],
    ["http://example.org/", "http://EXAMPLE.org./", "http://example.org:80/", "http://Example.ORG"],
    ["https://example.org/", "https://example.org:443/", "https://EXAMPLE.ORG.:443"],
    ["http://fa\u00df.de/", "http://FA\u00df.de./", "http://xn--fa-hia.de:80/"],
]


@pytest.mark.parametrize("spellings", SAME_HOST)
def test_one_host_has_one_key_however_it_is_written(spellings: list[str]) -> None:
    # One key: one politeness gate, one robots.txt (and its Crawl-delay) for the host.
    assert len({host_key(url) for url in spellings}) == 1, [host_key(u) for u in spellings]
    assert len({normalize_url(url) for url in spellings}) == 1
    scope = Scope.of(spellings[0], False)
    assert all(scope.judge(url) is None for url in spellings)


def test_a_scope_started_at_a_trailing_dot_keeps_its_own_links() -> None:
    assert Scope.of("http://Example.org./", False).judge("http://example.org/a") is None


def test_an_ipv6_zone_stays_in_the_url() -> None:
    # It names the interface a link-local address is reached on.
    assert normalize_url("http://[FE80::1%25eth0]:8080/a") == "http://[fe80::1%25eth0]:8080/a"
    assert host_key("http://[fe80::1%25eth0]/") != host_key("http://[fe80::1%25eth1]/")


def test_not_http_urls_have_no_spelling() -> None:
    for bad in ("mailto:a@b.c", "ftp://x/", "http://", "javascript:alert(1)", "http://x:99999/"):
        assert normalize_url(bad) is None


def test_ignore_query_drops_the_query() -> None:
    assert normalize_url("http://x.org/p?q=1", ignore_query=True) == "http://x.org/p"
    assert normalize_url("http://x.org/p?q=1") == "http://x.org/p?q=1"


def test_scope_host_subdomains_and_globs() -> None:
    scope = Scope.of("https://docs.example.co.uk/", False, ["/guide/*"], ["/guide/old/*"])
    assert scope.judge("https://docs.example.co.uk/guide/a") is None
    assert scope.judge("https://docs.example.co.uk/guide/old/a") == "filtered"
    assert scope.judge("https://docs.example.co.uk/blog/a") == "filtered"
    assert scope.judge("https://www.example.co.uk/guide/a") == "external"
    wide = Scope.of("https://docs.example.co.uk/", True)
    assert wide.judge("https://www.example.co.uk/x") is None
    assert wide.judge("https://other.co.uk/x") == "external"
    # Patterns match the decoded path.
    assert (
        Scope.of("http://x.org/", False, ["/caf\u00e9/*"]).judge("http://x.org/caf%C3%A9/1") is None
    )


def test_bad_patterns_are_named() -> None:
    assert pattern_problem("/docs/*") is None
    assert pattern_problem("*.pdf") is None
    for bad in ("docs/*", "", "/a b", "/x[", "/" + "a" * 600):
        assert pattern_problem(bad) is not None

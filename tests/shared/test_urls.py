"""URL normalization and crawl scope (no services)."""

from __future__ import annotations

import pytest

from shared.urls import Scope, normalize_url, pattern_problem


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

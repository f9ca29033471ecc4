"""URLs as a crawl sees them: one normalized spelling per page, and whether it is in scope.

Normalization (RFC 3986 section 6, as crawlers do it): scheme lowercased, the host in its one
spelling (below), the default port and the fragment dropped, `.` and `..` segments resolved,
percent-encoding normalized (escapes of unreserved characters decoded, the rest uppercased,
bytes that must be escaped escaped), an empty path made `/`; the query is kept as written
unless `ignore_query`. The registrable domain (eTLD+1) comes from the Public Suffix List bundled
with `tld` (no network).

A host has one spelling everywhere a URL names a place (the crawl frontier, its scope, the
per-host politeness gate, robots.txt and its Crawl-delay): `host_key` and `normalize_url` both
build it here, on shared/egress.py's `canonical_host` (what the egress policy and the domain
rules compare), so `[0:0:0:0:0:0:0:1]` is `[::1]`, `127.1` and `2130706433` are `127.0.0.1`,
`[::ffff:127.0.0.1]` is `127.0.0.1`, `EXAMPLE.org.` is `example.org` and `faß.de` is
`xn--fa-hia.de` (UTS 46, as aiohttp requests it).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import SplitResult, quote, unquote_to_bytes, urlsplit, urlunsplit

from tld import get_fld

from shared.egress import canonical_host

DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# What may stay literal in a path or query: RFC 3986's unreserved, sub-delims, ':' '@' '/' '?'.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
PATTERN_MAX = 500


@lru_cache(maxsize=4096)
def site_of(host: str) -> str:
    """The registrable domain of `host`; an IP address or a one-label host stands for itself."""
    host = host.lower().rstrip(".")
    if ":" in host or host.replace(".", "").isdigit():
        return host
    fld = get_fld(host, fix_protocol=True, fail_silently=True)
    if isinstance(fld, str):
        return fld
    # The Public Suffix List's implicit rule: an unlisted TLD (`.example`, `.test`) is a
    # public suffix of one label.
    return ".".join(host.split(".")[-2:])


def _normalize_escapes(part: str, safe: str) -> str:
    """Decode escapes of unreserved characters, uppercase the others, escape what must be."""

    def fix(match: re.Match[str]) -> str:
        byte = int(match.group(1), 16)
        return chr(byte) if byte in _UNRESERVED else f"%{byte:02X}"

    decoded = _ESCAPE.sub(fix, _LONE_PERCENT.sub("%25", part))
    # quote() leaves existing escapes alone only if '%' is safe; anything else is escaped.
    return quote(decoded, safe=safe + "%")


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4."""
    output: list[str] = []
    segments = path.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if len(output) > 1:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    result = "/".join(output)
    return result if result.startswith("/") else "/" + result


@lru_cache(maxsize=4096)
def _spelling(hostname: str) -> str:
    """The one spelling of a URL's host (as `urlsplit` reads it), IPv6 in brackets. An IPv6
    zone is kept (written %25): it picks the interface a link-local address is reached on."""
    host = canonical_host(hostname)
    if ":" not in host:
        return host
    zone = hostname.partition("%")[2]
    zone = zone[2:] if zone.startswith("25") else zone
    return f"[{host}%25{zone}]" if zone else f"[{host}]"


class _Origin(NamedTuple):
    scheme: str
    host: str  # in its one spelling
    port: int  # filled in
    parts: SplitResult


def _origin(url: str) -> _Origin | None:
    """Where an http(s) URL points; None if it is not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = _spelling(parts.hostname)
    if not host:
        return None
    return _Origin(scheme, host, DEFAULT_PORTS[scheme] if port is None else port, parts)


def url_host(url: str) -> str | None:
    """The host of an http(s) URL in its one spelling, or None if it has none."""
    origin = _origin(url)
    return None if origin is None else origin.host


def host_key(url: str) -> str | None:
    """`host:port` of an http(s) URL: the key of its per-host politeness gate and of its
    robots.txt (`http://a.com` and `https://a.com` are two hosts); None if it has none."""
    origin = _origin(url)
    return None if origin is None else f"{origin.host}:{origin.port}"


def normalize_url(url: str, *, ignore_query: bool = False) -> str | None:
    """The one spelling of an http(s) URL, or None if it is not one."""
    origin = _origin(url)
    if origin is None:
        return None
    scheme, host, port, parts = origin
    netloc = host if port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _remove_dot_segments(_normalize_escapes(parts.path or "/", _PATH_SAFE))
    query = "" if ignore_query else _normalize_escapes(parts.query, _QUERY_SAFE)
    return urlunsplit((scheme, netloc, path, query, ""))


def url_path(url: str) -> str:
    """The decoded path of a normalized URL (what include/exclude patterns match)."""
    raw = urlsplit(url).path or "/"
    return unquote_to_bytes(raw).decode("utf-8", "replace")


def pattern_problem(pattern: str) -> str | None:
    """Why a glob pattern on the URL path is unusable, or None."""
    if not pattern or len(pattern) > PATTERN_MAX:
        return f"a pattern has 1 to {PATTERN_MAX} characters"
    if not pattern.startswith(("/", "*")):
        return f"{pattern!r} must start with '/' or '*' (it matches the URL's path)"
    if any(ch.isspace() or ord(ch) < 32 for ch in pattern):
        return f"{pattern!r} holds whitespace or a control character"
    if pattern.count("[") != pattern.count("]"):
        return f"{pattern!r} has an unclosed '['"
    try:
        re.compile(fnmatch.translate(pattern))
    except re.error as exc:
        return f"{pattern!r} is not a valid glob: {exc}"
    return None


@dataclass(frozen=True)
class Scope:
    """Which URLs a crawl may take: the start's host (or its registrable domain with
    `allow_subdomains`), and paths through include/exclude globs (exclude wins)."""

    host: str
    allow_subdomains: bool = False
    include_paths: tuple[str, ...] = ()
    exclude_paths: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        start_url: str,
        allow_subdomains: bool,
        include_paths: list[str] | tuple[str, ...] = (),
        exclude_paths: list[str] | tuple[str, ...] = (),
    ) -> Scope:
        host = url_host(start_url) or ""
        return cls(host, allow_subdomains, tuple(include_paths), tuple(exclude_paths))

    def same_site(self, url: str) -> bool:
        """Whether `url`'s host is the crawl's (or, with subdomains, under its domain)."""
        host = url_host(url) or ""
        if host == self.host:
            return True
        return self.allow_subdomains and site_of(host) == site_of(self.host)

    def path_allowed(self, url: str) -> bool:
        """Whether the include/exclude patterns let `url`'s path through."""
        path = url_path(url)
        if any(fnmatch.fnmatchcase(path, p) for p in self.exclude_paths):
            return False
        return not self.include_paths or any(
            fnmatch.fnmatchcase(path, p) for p in self.include_paths
        )

    def judge(self, url: str) -> str | None:
        """None if the crawl may take `url`; else why not: `external` or `filtered`."""
        if not self.same_site(url):
            return "external"
        return None if self.path_allowed(url) else "filtered"

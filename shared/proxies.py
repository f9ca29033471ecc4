"""An agent's outbound proxies: how their URLs are read and judged (at save time and in workers).

A proxy is `{"url": "http://host:port" | "https://..." | "socks5://...", "auth_secret": name?}`.
The URL names where the proxy is and nothing else: no credentials (they come from the agent's
secret `auth_secret`, whose value is `user:password`), no path, query or fragment. Its address
is judged by the egress policy like a webhook URL's (an internal proxy needs
OUTRIDER_EGRESS_ALLOW_CIDRS, a port other than the allowed ones OUTRIDER_EGRESS_ALLOWED_PORTS),
at save time and again, on every resolved address, when a worker connects to it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from yarl import URL

from shared.egress import EgressPolicy
from shared.errors import EgressBlocked, ValidationFailed

ProxyRotation = Literal["round_robin", "random", "sticky_host"]
PROXY_ROTATIONS: tuple[str, ...] = ("round_robin", "random", "sticky_host")
PROXY_SCHEMES = {"http": 80, "https": 443, "socks5": 1080}
MAX_PROXIES = 100
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(.*)", re.DOTALL)

# The API's 422 codes for a proxy it will not save.
UNSUPPORTED_PROXY_SCHEME = "unsupported_proxy_scheme"
PROXY_CREDENTIALS_IN_URL = "proxy_credentials_in_url"
INVALID_PROXY_URL = "invalid_proxy_url"
PROXY_FORBIDDEN = "proxy_forbidden"
UNKNOWN_SECRET = "unknown_secret"  # noqa: S105 - an error code, not a secret


class ProxyUrlError(ValueError):
    """A proxy URL that cannot be used; `code` is the API's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ProxyAddress:
    """Where a proxy is: `url` is its normal form (`scheme://host:port`), what results name."""

    scheme: str
    host: str  # as yarl writes it (IPv6 without brackets), lower case, IDNA
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def probe_url(self) -> str:
        """An http URL of the same host and port, for the egress policy's URL check."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


def parse_proxy_url(url: str) -> ProxyAddress:
    """The proxy's scheme, host and port; ProxyUrlError (with the API's code) if unusable."""
    match = _URL.fullmatch(url.strip())
    if not match:
        raise ProxyUrlError(INVALID_PROXY_URL, "A proxy URL looks like http://host:port.")
    scheme, authority, rest = match.group(1).lower(), match.group(2), match.group(3)
    if scheme not in PROXY_SCHEMES:
        raise ProxyUrlError(
            UNSUPPORTED_PROXY_SCHEME,
            f"Proxy scheme {scheme!r} is not supported: use http, https or socks5.",
        )
    if "@" in authority:
        raise ProxyUrlError(
            PROXY_CREDENTIALS_IN_URL,
            "A proxy URL must not hold credentials: put `user:password` in one of the agent's "
            "secrets and name it in `auth_secret`.",
        )
    if rest not in ("", "/"):
        raise ProxyUrlError(INVALID_PROXY_URL, "A proxy URL has no path, query or fragment.")
    try:
        parsed = URL(f"{scheme}://{authority}/")
        host, port = parsed.raw_host, parsed.explicit_port or PROXY_SCHEMES[scheme]
    except (ValueError, TypeError):
        raise ProxyUrlError(INVALID_PROXY_URL, "The proxy URL cannot be parsed.") from None
    if not host:
        raise ProxyUrlError(INVALID_PROXY_URL, "The proxy URL has no host.")
    return ProxyAddress(scheme, host.lower(), port)


def judge_proxy(policy: EgressPolicy, address: ProxyAddress) -> None:
    """Raise EgressBlocked if the egress policy refuses the proxy's host or port (as it
    would a webhook URL's; the addresses its name resolves to are judged when connecting)."""
    policy.check_url(address.probe_url)


def check_proxies(
    policy: EgressPolicy,
    proxies: Sequence[Mapping[str, Any]],
    secret_names: Iterable[str] | None,
) -> None:
    """422 unless every proxy can be saved: a supported scheme, no credentials in the URL, an
    address the egress policy accepts (`proxy_forbidden` for an internal one) and an
    `auth_secret` the agent has (`unknown_secret`; not checked when `secret_names` is None).
    `details.index` names the proxy."""
    names = None if secret_names is None else set(secret_names)
    for index, proxy in enumerate(proxies):
        details = {"index": index}
        try:
            address = parse_proxy_url(str(proxy.get("url", "")))
        except ProxyUrlError as exc:
            raise ValidationFailed(f"proxies: {exc}", code=exc.code, details=details) from None
        try:
            judge_proxy(policy, address)
        except EgressBlocked as exc:
            code = PROXY_FORBIDDEN if exc.code == "blocked_destination" else INVALID_PROXY_URL
            raise ValidationFailed(f"proxies: {exc}", code=code, details=details) from exc
        secret = proxy.get("auth_secret")
        if names is not None and secret is not None and secret not in names:
            raise ValidationFailed(
                f"proxies: the agent has no secret named {secret!r}.",
                code=UNKNOWN_SECRET,
                details=details,
            )


def normal_proxies(proxies: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Proxies as stored: each URL in its normal form (checked by `check_proxies` first)."""
    stored = []
    for proxy in proxies:
        entry = {"url": parse_proxy_url(str(proxy["url"])).url}
        if proxy.get("auth_secret") is not None:
            entry["auth_secret"] = str(proxy["auth_secret"])
        stored.append(entry)
    return stored


def proxy_id(agent_id: object, url: str, auth_secret: str | None) -> str:
    """A proxy's name in Redis keys: a hash of the agent, the URL and the secret's name (never
    its value), so nothing about the proxy or its credentials is readable there."""
    text = f"{agent_id}\0{url}\0{auth_secret or ''}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]

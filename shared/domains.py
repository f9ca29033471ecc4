"""Agent domain rules: blocked domains always lose; an allow list, when set, must match."""

from __future__ import annotations

from urllib.parse import urlsplit


def _matches(host: str, rule: str) -> bool:
    rule = rule.lower().strip().lstrip(".").rstrip(".")
    return host == rule or host.endswith("." + rule)


def domain_allowed(url: str, allowed: list[str] | None, blocked: list[str] | None) -> bool:
    """Whether an agent with these rules may call this URL's host (a domain covers its
    subdomains)."""
    if not allowed and not blocked:  # most agents: no rules, no parsing
        return True
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if any(_matches(host, rule) for rule in blocked or []):
        return False
    return not allowed or any(_matches(host, rule) for rule in allowed)

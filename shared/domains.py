"""Agent domain rules: blocked domains always lose; an allow list, when set, must match.

Hosts and rules are compared in one canonical form (shared/egress.py `canonical_host`): an IP
address in any spelling (decimal, octal, hex, short, IPv4-mapped or IPv4-compatible IPv6) is
the address, so `blocked_domains: ["127.0.0.3"]` also refuses `http://[::ffff:127.0.0.3]/`
and `http://2130706435/`, and a rule written as `0x7f000003` means 127.0.0.3. A name rule
covers its subdomains; an address rule covers that address only.
"""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

from shared.egress import canonical_address, canonical_host


@functools.lru_cache(maxsize=4096)
def _rule(rule: str) -> tuple[str, bool]:
    """A rule's canonical host, and whether it is an address (rules repeat across jobs)."""
    text = rule.strip().lstrip(".")
    return canonical_host(text), canonical_address(text) is not None


def _matches(host: str, is_address: bool, rule: str) -> bool:
    canonical, rule_is_address = _rule(rule)
    if not canonical:
        return False
    if is_address or rule_is_address:
        return host == canonical
    return host == canonical or host.endswith("." + canonical)


def domain_allowed(url: str, allowed: list[str] | None, blocked: list[str] | None) -> bool:
    """Whether an agent with these rules may call this URL's host (a domain covers its
    subdomains; addresses compare in canonical form)."""
    if not allowed and not blocked:  # most agents: no rules, no parsing
        return True
    raw = urlsplit(url).hostname or ""
    is_address = canonical_address(raw) is not None
    host = canonical_host(raw)
    if any(_matches(host, is_address, rule) for rule in blocked or []):
        return False
    return not allowed or any(_matches(host, is_address, rule) for rule in allowed)

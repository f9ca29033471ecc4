"""The result cache's key: the job kind, the normalized URL and every output option.

Two jobs of one owner share a cached result when they would ask for the same thing: same kind,
same URL once normalized (scheme and host in lower case, default port and fragment dropped, an
empty path as `/`; the query is kept as given, since its order can matter to a server) and the
same input otherwise (formats, `extract`, headers, render options...), except what does not
change the answer: `max_age_s` and `timeout_s`. The key is a SHA-256 of that, in canonical JSON.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

IGNORED_FIELDS = frozenset({"url", "max_age_s", "timeout_s"})
DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_url(url: str) -> str:
    """The URL as the cache compares it."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url.strip()
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    if parts.username or parts.password:
        userinfo = parts.username or ""
        userinfo += f":{parts.password}" if parts.password else ""
        host = f"{userinfo}@{host}"
    return urlunsplit((scheme, host, parts.path or "/", parts.query, ""))


def max_age_s(job_input: dict[str, Any]) -> int:
    """The job's `max_age_s` (0 when absent: never cached)."""
    value = job_input.get("max_age_s") or 0
    return int(value) if isinstance(value, int | float) else 0


def cache_key(kind: str, job_input: dict[str, Any]) -> str:
    """The key of a job's result in the cache."""
    options = {k: v for k, v in job_input.items() if k not in IGNORED_FIELDS}
    material = {"kind": kind, "url": normalize_url(str(job_input.get("url", ""))), **options}
    text = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()

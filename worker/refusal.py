"""Why the browser's egress proxy did not connect a request: a job error code and a status."""

from __future__ import annotations

# The refusals that are the egress policy's (not a DNS or connection failure).
POLICY_CODES = frozenset({"blocked_destination", "invalid_url"})


class Refusal(Exception):
    """Why the proxy did not connect: a job error code, a message and the HTTP status."""

    def __init__(self, code: str, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

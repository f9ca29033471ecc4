"""Log lines name an exception even when its message is empty."""

from __future__ import annotations

from shared.logging import describe


def test_an_empty_message_still_names_the_exception() -> None:
    assert describe(TimeoutError()) == "TimeoutError"
    assert describe(ConnectionResetError(104, "Connection reset by peer")) == (
        "ConnectionResetError: [Errno 104] Connection reset by peer"
    )
    assert len(describe(ValueError("x" * 500))) == 200
    assert len(describe(ValueError("x" * 500), 300)) == 300

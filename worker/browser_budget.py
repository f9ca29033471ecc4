"""The time a render job has left, handed to each page operation in turn."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from playwright.async_api import Error as PlaywrightError

from shared.job_errors import JobErrorCode
from worker.retry import JobError

T = TypeVar("T")
OP_GRACE_S = 2.0  # the asyncio backstop fires this long after Playwright's own timeout


class Budget:
    """The time a job has left, handed to each page operation in turn."""

    def __init__(self, seconds: float) -> None:
        self.deadline = asyncio.get_running_loop().time() + seconds

    def left(self) -> float:
        """Seconds left (negative once past the deadline)."""
        return self.deadline - asyncio.get_running_loop().time()

    async def run(self, what: str, call: Callable[[float], Awaitable[T]]) -> T:
        """Run `call(timeout_ms)` under Playwright's timeout and an asyncio one; past the
        deadline it is a retryable `timeout` naming `what`."""
        left = self.deadline - asyncio.get_running_loop().time()
        try:
            if left <= 0:
                raise TimeoutError
            async with asyncio.timeout(left + OP_GRACE_S):
                return await call(left * 1000)
        except TimeoutError as exc:
            raise _timeout(what) from exc
        except PlaywrightError as exc:
            if exc.name == "TimeoutError":
                raise _timeout(what) from exc
            raise


def _timeout(what: str) -> JobError:
    return JobError(
        JobErrorCode.TIMEOUT, f"{what} did not finish in the job's time.", retryable=True
    )

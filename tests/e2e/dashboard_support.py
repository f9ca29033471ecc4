"""What the dashboard's browser tests share: watching the page, signing in, confirming."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from playwright.async_api import ConsoleMessage, Page, Request, expect


@dataclass
class Watch:
    """What the page did: console messages (by phase), requests and uncaught errors."""

    phase: str = "normal"
    console: list[tuple[str, str, str]] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("request", self._request)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _console(self, message: ConsoleMessage) -> None:
        where = message.location.get("url", "")
        self.console.append((self.phase, message.type, f"{message.text} @ {where}"))

    def _request(self, request: Request) -> None:
        self.requests.append((request.url, request.headers))

    def stream_requests(self) -> list[dict[str, str]]:
        return [headers for url, headers in self.requests if urlsplit(url).path == "/v1/events"]

    def unexpected_console(self) -> list[tuple[str, str, str]]:
        """Errors and warnings other than the refused keys' 401s and, while the API is
        down, failed connections."""
        allowed = {
            "normal": re.compile(r"status of 401 \(Unauthorized\)"),
            "outage": re.compile(r"Failed to load resource: net::ERR_|status of 401"),
        }
        return [
            entry
            for entry in self.console
            if entry[1] in ("error", "warning") and not allowed[entry[0]].search(entry[2])
        ]


async def sign_in(page: Page, key: str) -> None:
    await page.locator("#api-key").fill(key)
    await page.get_by_role("button", name="Sign in").click()


async def confirm(page: Page) -> None:
    """Answer the page's confirmation dialog with its Confirm button."""
    dialog = page.locator("dialog#confirm")
    await expect(dialog).to_be_visible()
    await dialog.locator("#confirm-ok").click()
    await expect(dialog).to_be_hidden()

"""A session's state in one attempt: Playwright's storage state and an aiohttp cookie jar.

The format (worker/sessions.py has the life of a session job): `{"cookies": [...],
"origins": [...]}`, cookies with `domain` (a leading dot for a Domain cookie, none for a
host-only one), `path`, `expires` in Unix seconds or -1, `httpOnly`, `secure`, `sameSite`;
each origin's `localStorage`. aiohttp engines see the cookies as a jar of the attempt's own; a
render starts from the state and hands its context's back.
"""

from __future__ import annotations

import json
import math
import time
from email.utils import formatdate
from http.cookies import Morsel
from typing import Any

import aiohttp
from yarl import URL

from shared.repositories.sessions import StoredSession


def new_jar() -> aiohttp.CookieJar:
    """A jar like a browser's: cookies of IP-address hosts kept, values sent as given."""
    return aiohttp.CookieJar(unsafe=True, quote_cookie=False)


def _identity(cookie: dict[str, Any]) -> tuple[str, str, str]:
    domain = str(cookie.get("domain", "")).lstrip(".").lower()
    return domain, str(cookie.get("path") or "/").rstrip("/"), str(cookie.get("name", ""))


def _expired(cookie: dict[str, Any], now: float) -> bool:
    expires = cookie.get("expires", -1)
    return _number(expires) and 0 <= expires <= now


def load_cookies(jar: aiohttp.CookieJar, cookies: list[dict[str, Any]]) -> None:
    """Put Playwright-shaped cookies into an aiohttp jar (expired ones are skipped)."""
    now = time.time()
    for cookie in cookies:
        name, value = str(cookie.get("name", "")), str(cookie.get("value", ""))
        raw_domain = str(cookie.get("domain", ""))
        domain = raw_domain.lstrip(".")
        expires = cookie.get("expires", -1)
        if not name or not domain or _expired(cookie, now):
            continue
        morsel: Morsel[str] = Morsel()
        morsel.set(name, value, value)
        morsel["path"] = str(cookie.get("path") or "/")
        if raw_domain.startswith("."):  # a Domain cookie; without the dot, host-only
            morsel["domain"] = domain
        if _number(expires) and expires > 0:
            morsel["expires"] = formatdate(min(expires, 2**31 - 1), usegmt=True)
        if cookie.get("secure"):
            morsel["secure"] = True
        if cookie.get("httpOnly"):
            morsel["httponly"] = True
        if cookie.get("sameSite") in ("Strict", "Lax", "None"):
            morsel["samesite"] = str(cookie["sameSite"])
        jar.update_cookies({name: morsel}, URL.build(scheme="https", host=domain))


def dump_cookies(jar: aiohttp.CookieJar) -> list[dict[str, Any]]:
    """The jar's live cookies in Playwright's shape."""
    expirations: dict[tuple[str, str, str], float] = getattr(jar, "_expirations", {})
    host_only = jar.host_only_cookies
    now = time.time()
    out = []
    for (domain, path), cookies in jar.cookies.items():
        for name, morsel in cookies.items():
            expires = expirations.get((domain, path, name), -1)
            if 0 <= expires <= now:
                continue
            samesite = str(morsel["samesite"] or "").capitalize()
            out.append(
                {
                    "name": name,
                    "value": morsel.value,
                    "domain": domain if (domain, path, name) in host_only else f".{domain}",
                    "path": morsel["path"] or "/",
                    "expires": expires,
                    "httpOnly": bool(morsel["httponly"]),
                    "secure": bool(morsel["secure"]),
                    "sameSite": samesite if samesite in ("Strict", "Lax", "None") else "Lax",
                }
            )
    return out


class JobSession:
    """One attempt's view of its session: the state it read, and what the job did to it.

    aiohttp engines use `jar` (made from the state on first use, then the truth about the
    cookies); a render starts from `storage_state()` and hands its context's state to
    `replace()` (which refills the jar, if there is one). `final_state()` is what is written
    back.
    """

    def __init__(self, name: str, stored: StoredSession) -> None:
        self.name = name
        self.version = stored.version
        self._state = _shaped(stored.state)
        self._read = _canonical(self._state)
        self._jar: aiohttp.CookieJar | None = None
        self._unloaded: list[dict[str, Any]] = []

    @property
    def jar(self) -> aiohttp.CookieJar:
        """The session's cookies as an aiohttp jar (this attempt's alone)."""
        if self._jar is None:
            self._jar = new_jar()
            self._fill_jar()
        return self._jar

    def _fill_jar(self) -> None:
        assert self._jar is not None
        cookies = self._state["cookies"]
        load_cookies(self._jar, cookies)
        loaded = {_identity(c) for c in dump_cookies(self._jar)}
        now = time.time()
        # What the jar would not take (it may be stricter than a browser) is kept as it was.
        self._unloaded = [c for c in cookies if _identity(c) not in loaded and not _expired(c, now)]

    def _cookies(self) -> list[dict[str, Any]]:
        if self._jar is None:
            return list(self._state["cookies"])
        return self._unloaded + dump_cookies(self._jar)

    def storage_state(self) -> dict[str, Any]:
        """The state to start a browser context from."""
        return {"cookies": self._cookies(), "origins": list(self._state["origins"])}

    def replace(self, state: dict[str, Any]) -> None:
        """A browser context's state at its end: the session's from now on."""
        self._state = _shaped(state)
        if self._jar is not None:
            self._jar.clear()
            self._fill_jar()

    def final_state(self) -> dict[str, Any]:
        """The state to write back."""
        return self.storage_state()

    def changed(self) -> bool:
        """Whether the job changed the state it read (expired cookies do not count)."""
        return _canonical(self.final_state()) != self._read


def _shaped(state: dict[str, Any]) -> dict[str, Any]:
    cookies = state.get("cookies")
    origins = state.get("origins")
    return {
        "cookies": [c for c in cookies if isinstance(c, dict)] if isinstance(cookies, list) else [],
        "origins": [o for o in origins if isinstance(o, dict)] if isinstance(origins, list) else [],
    }


def _canonical(state: dict[str, Any]) -> str:
    now = time.time()
    cookies = sorted(
        (
            {**c, "expires": int(c["expires"]) if _number(c.get("expires")) else -1}
            for c in state["cookies"]
            if not _expired(c, now)
        ),
        key=lambda c: (_identity(c), str(c.get("value"))),
    )
    origins = sorted(state["origins"], key=lambda o: str(o.get("origin")))
    return json.dumps({"cookies": cookies, "origins": origins}, sort_keys=True)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

"""A members-only site in the manner of small real ones, served on loopback from a thread.

Built like Python's own `http.server` sites (and the hand-made login pages in front of many
intranets): `ThreadingHTTPServer`, HTTP/1.1 keep-alive, a login form whose `<button>` has no
type or id, and a POST that answers `303 See Other` with a bare session cookie (`sid=...;
Path=/`: no HttpOnly, no SameSite, no expiry) on an IP-address host. Members' pages form a
binary tree: `/members/{i}` links to `/members/{2i+1}` and `/members/{2i+2}` (below `pages`)
and answers after `delay_s`; every visit also sets a `seen` cookie (so each page changes its
session). Without a valid `sid` a page says "Please log in." and links nowhere.

It records, per path, the Cookie header of every request and the most members' pages it was
answering at once (`peak_members`).
"""

from __future__ import annotations

import contextlib
import http.server
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

LOGIN_FORM = (
    b'<html><body><form method="post" action="/login">'
    b'<input id="user" name="u"><input id="pass" name="p" type="password">'
    b"<button>Log in</button></form></body></html>"
)
PASSWORD = "members-only"


@dataclass
class MembersSite:
    """What the site serves and what it saw."""

    pages: int = 15
    delay_s: float = 0.3
    base_url: str = ""
    tokens: set[str] = field(default_factory=set)
    cookies: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    members_in_flight: int = 0
    peak_members: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def member(self, cookie: str) -> bool:
        sent = dict(part.strip().partition("=")[::2] for part in cookie.split(";") if part)
        return sent.get("sid", "") in self.tokens

    def page(self, i: int, member: bool) -> bytes:
        if not member:
            return b"<html><body><h1>Members</h1><p>Please log in.</p></body></html>"
        kids = "".join(
            f'<li><a href="/members/{c}">Page {c}</a></li>'
            for c in (2 * i + 1, 2 * i + 2)
            if c < self.pages
        )
        text = f"Welcome back, member. This is page {i} of the members' area. " * 3
        return f"<html><body><h1>Page {i}</h1><p>{text}</p><ul>{kids}</ul></body></html>".encode()


def _handler(site: MembersSite) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def send(
            self, body: bytes, status: int = 200, headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            form = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            if self.path == "/login" and f"p={PASSWORD}" in form.split("&"):
                token = secrets.token_hex(8)
                site.tokens.add(token)
                cookie = f"sid={token}; Path=/"
                self.send(b"", 303, {"Set-Cookie": cookie, "Location": "/members/0"})
            else:
                self.send(b"<html><body><p>Wrong password.</p></body></html>", 403)

        def do_GET(self) -> None:
            cookie = self.headers.get("Cookie", "")
            site.cookies[self.path].append(cookie)
            if self.path == "/login":
                self.send(LOGIN_FORM)
            elif self.path.startswith("/members/"):
                self.members(int(self.path.rsplit("/", 1)[1]), cookie)
            else:
                self.send(b"not found", 404)

        def members(self, i: int, cookie: str) -> None:
            member = site.member(cookie)
            if member:
                with site.lock:
                    site.members_in_flight += 1
                    site.peak_members = max(site.peak_members, site.members_in_flight)
                time.sleep(site.delay_s)
                with site.lock:
                    site.members_in_flight -= 1
            self.send(site.page(i, member), headers={"Set-Cookie": f"seen={i}; Path=/"})

    return Handler


@contextlib.contextmanager
def serve_members_site(pages: int = 15, delay_s: float = 0.3) -> Iterator[MembersSite]:
    """The site on a free loopback port, for the block."""
    site = MembersSite(pages=pages, delay_s=delay_s)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
    server.daemon_threads = True
    site.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

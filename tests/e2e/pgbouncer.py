"""A private PgBouncer in transaction pooling mode in front of the test PostgreSQL, on a free
loopback port (Debian's `pgbouncer`; `make install` installs it)."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

from sqlalchemy.engine import make_url

from outrider.dev import free_port
from tests.e2e.processes import spawn


def pgbouncer_binary() -> str | None:
    """Debian installs it in /usr/sbin, which is not on every user's PATH."""
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")


class PgBouncer:
    """PgBouncer on a loopback port, pooling every database of `server_url`'s server in
    transaction mode with `pool_size` server connections per database: many more clients than
    that, so their transactions interleave on the same server connections."""

    def __init__(self, workdir: Path, server_url: str, pool_size: int = 3) -> None:
        self.workdir = workdir
        self.server = make_url(server_url)
        self.pool_size = pool_size
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        """A SQLAlchemy URL of `database` through this PgBouncer."""
        url = self.server.set(host="127.0.0.1", port=self.port, database=database)
        return url.render_as_string(hide_password=False)

    @property
    def log(self) -> str:
        path = self.workdir / "pgbouncer.log"
        return path.read_text(errors="replace")[-4000:] if path.is_file() else ""

    def _config(self) -> Path:
        server = self.server
        target = f"host={server.host or '127.0.0.1'} port={server.port or 5432}"
        if server.username:
            target += f" user={server.username}"
        if server.password:
            target += f" password={server.password}"
        ini = self.workdir / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = {target}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            # Any client name is let in and logs in as the server user above.
            "auth_type = any\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            "reserve_pool_size = 0\n"
            "max_client_conn = 1000\n"
            "log_connections = 0\n"
            "log_disconnections = 0\n"
        )
        return ini

    async def start(self, timeout_s: float = 10.0) -> None:
        binary = pgbouncer_binary()
        assert binary, "pgbouncer is not installed (make install)"
        args = [binary]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            user = "postgres" if _user_exists("postgres") else "nobody"
            args += ["-u", user]
        args.append(str(self._config()))
        self.proc = spawn(args, {}, self.workdir / "pgbouncer.log", self.workdir)
        deadline = time.monotonic() + timeout_s
        while not self._listening():
            assert self.proc.poll() is None, self.log
            assert time.monotonic() < deadline, f"pgbouncer did not start:\n{self.log}"
            await asyncio.sleep(0.05)

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: a fast exit, every connection closed
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True

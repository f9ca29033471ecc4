"""A private, non-persistent redis-server that a test can kill and restart on the same port."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from pathlib import Path

from outrider.dev import free_port, redis_server_binary
from tests.e2e.processes import spawn


class RedisServer:
    """redis-server on a loopback port with no persistence (--save "" --appendonly no): a
    restart loses every key, the worst case for the queue."""

    def __init__(self, workdir: Path, *extra_args: str) -> None:
        """`extra_args`: more redis-server options, e.g. "--maxmemory", "4mb"."""
        self.workdir = workdir
        self.extra_args = list(extra_args)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.2):
                return True
        except OSError:
            return False

    async def start(self, timeout_s: float = 10.0) -> None:
        assert self.proc is None or self.proc.poll() is not None
        args = [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            *self.extra_args,
        ]
        self.proc = spawn(args, {}, self.workdir / "redis.log", self.workdir)
        deadline = time.monotonic() + timeout_s
        while not self._listening():
            assert self.proc.poll() is None, (self.workdir / "redis.log").read_text()
            assert time.monotonic() < deadline, "redis-server did not start listening"
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown, nothing saved, every connection reset."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(5)
        assert not self._listening()

"""Chromium's processes: find them, measure them, kill them, and reap what they leave behind.

Playwright's node driver starts Chromium in a process group of its own and SIGKILLs that group
when it exits; it exits when its stdin closes, i.e. when the worker dies however it dies (even
SIGKILL), so Chromium goes with the worker. Chromium leaves orphans on every exit (zygotes, the
GPU process, crashpad handlers), zombies forever under an init that does not reap; so a browser
worker makes itself a child subreaper (Linux) while a browser runs and reaps every Chromium
orphan it inherits. Only processes named like Chromium are reaped, never the children that
asyncio or subprocess wait for. Everything here blocks: call it with asyncio.to_thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

import psutil

PR_SET_CHILD_SUBREAPER = 36
CHROMIUM_NAMES = ("chrom", "headless_shell")  # chromium, chrome, chrome_crashpad_handler
RENDERER_FLAG = "--type=renderer"
MAX_NEW_PIDS = 4096


class _Subreaper:
    holders = 0
    lock = threading.Lock()


def _prctl_subreaper(on: bool) -> None:
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)


def hold_subreaper() -> None:
    """Adopt orphaned descendants from now on (reference-counted across browser pools)."""
    with _Subreaper.lock:
        _Subreaper.holders += 1
        _prctl_subreaper(True)


def release_subreaper() -> None:
    """Drop one hold; the last one gives orphans back to init."""
    with _Subreaper.lock:
        _Subreaper.holders = max(_Subreaper.holders - 1, 0)
        if _Subreaper.holders == 0:
            _prctl_subreaper(False)


def is_chromium(process: psutil.Process) -> bool:
    return process.name().startswith(CHROMIUM_NAMES)


def _children() -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return psutil.Process().children()
    return []


def reap_chromium() -> int:
    """Reap the Chromium zombies this process adopted; returns how many."""
    reaped = 0
    for child in _children():
        with contextlib.suppress(psutil.Error, ChildProcessError):
            if child.status() == psutil.STATUS_ZOMBIE and is_chromium(child):
                os.waitpid(child.pid, os.WNOHANG)
                reaped += 1
    return reaped


def reap_for(seconds: float) -> None:
    """Reap until no Chromium child is left (crashpad handlers leave a moment after)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reap_chromium()
        if not any(is_chromium(p) for p in _children()):
            return
        time.sleep(0.05)


def _group(pgid: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(process.pid) == pgid:
                members.append(process)
    return members


def terminate_group(pgid: int, wait_s: float = 5.0) -> list[int]:
    """SIGKILL a browser's process group, then reap it; returns the pids still there."""
    if any(is_chromium(p) for p in _group(pgid)):  # never a group that is no longer Chromium's
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while True:
        reap_chromium()
        left = [p.pid for p in _group(pgid)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


@dataclass(frozen=True)
class Usage:
    """The memory of one browser's processes, in bytes (see `Tree.usage`)."""

    total: int
    renderers: dict[int, int]  # pid -> its own memory, one entry per renderer process


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:
        return None


def _field(status: bytes, name: bytes) -> int:
    """A number of /proc/PID/status (kB for the Rss lines); 0 when absent."""
    start = status.find(b"\n" + name + b":")
    if start < 0:
        return 0
    return int(status[start + len(name) + 2 : status.index(b"\n", start + 1)].split()[0])


def _parent(stat: bytes) -> int:
    """The parent pid in a /proc/PID/stat (after the command name, which may hold anything)."""
    return int(stat[stat.rindex(b")") + 2 :].split(b" ", 2)[1])


def _last_pid() -> int | None:
    """The pid the kernel handed out last (processes and threads share the numbers)."""
    try:
        with open("/proc/loadavg", "rb") as loadavg:
            return int(loadavg.read().split()[4])
    except (OSError, ValueError, IndexError):
        return None


class Tree:
    """One browser's processes and their memory, followed cheaply. The first look walks every
    process of the system (psutil); later ones read only the pids handed out since the last
    (/proc/loadavg names the newest) and keep the processes whose parent is in the tree, so a
    sample costs a read per member and per new pid rather than per process on the machine.
    More than MAX_NEW_PIDS new pids, or numbers wrapping around, mean another full walk.
    Blocking: call it in a thread."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.members: dict[int, bool | None] = {}  # pid -> a renderer? (None: not asked yet)
        self.seen_up_to: int | None = None
        self.walks = 0

    def _walk(self) -> None:
        self.walks += 1
        try:
            children = psutil.Process(self.root).children(recursive=True)
        except psutil.Error:
            children = []
        pids = [self.root, *(child.pid for child in children)]
        self.members = {pid: self.members.get(pid) for pid in pids}

    def _follow(self, last: int, first: int) -> None:
        for pid in range(first, last + 1):
            stat = _read(f"/proc/{pid}/stat")  # threads' ids too: most new ids are threads
            if stat is None or _parent(stat) not in self.members:
                continue
            status = _read(f"/proc/{pid}/status")
            if status is not None and _field(status, b"Tgid") == pid:  # not a thread
                self.members[pid] = None

    def _is_renderer(self, pid: int) -> bool:
        known = self.members.get(pid)
        if known is None:
            # Chromium rewrites its processes' titles: words, not NUL-separated arguments.
            words = (_read(f"/proc/{pid}/cmdline") or b"").replace(b"\0", b" ").split()
            known = self.members[pid] = RENDERER_FLAG.encode() in words
        return known

    def usage(self) -> Usage:
        """The resident memory of the tree: each process's own pages (anonymous and shared
        memory) plus the largest file-backed RSS once. Summing plain RSS would count the
        Chromium binary and its libraries, mapped by every process, once per process (about
        3x the real footprint of a browser with 4 pages). Renderers by their own pages."""
        last, seen = _last_pid(), self.seen_up_to
        if last is None or seen is None or not 0 <= last - seen <= MAX_NEW_PIDS:
            self._walk()
        else:
            self._follow(last, seen + 1)
        self.seen_up_to = last
        own_total, files, renderers = 0, 0, {}
        for pid in list(self.members):
            status = _read(f"/proc/{pid}/status")
            if status is None:
                del self.members[pid]
                continue
            own = (_field(status, b"RssAnon") + _field(status, b"RssShmem")) * 1024
            own_total, files = own_total + own, max(files, _field(status, b"RssFile") * 1024)
            if self._is_renderer(pid):
                renderers[pid] = own
        return Usage(own_total + files, renderers)


def kill_renderer(pid: int) -> bool:
    """SIGKILL a Chromium renderer (checked to be one, as pids are reused); whether it was."""
    try:
        process = psutil.Process(pid)
        if not (is_chromium(process) and RENDERER_FLAG in process.cmdline()):
            return False
        process.kill()
    except psutil.Error:
        return False
    return True


def running(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def find_by_argument(argument: str) -> int | None:
    """The descendant of this process started with `argument`, if any: the topmost one, as a
    child forked by it carries the same command line until it execs."""
    found = set()
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if argument in process.cmdline():
                found.add(process)
    for process in found:
        with contextlib.suppress(psutil.Error):
            if process.parent() not in found:
                return process.pid
    return None

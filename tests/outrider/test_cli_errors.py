"""A backing service that is unset or down is one clear line from the CLI, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from outrider.dev import free_port


def outrider(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OUTRIDER_")}
    clean.update(OUTRIDER_DATA_DIR=str(tmp_path / "data"), **env)
    return subprocess.run(
        [sys.executable, "-m", "outrider", *args],
        env=clean,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_queue_without_redis_says_how_to_configure_it(tmp_path: Path) -> None:
    assert_one_line(outrider(["queue"], tmp_path), "OUTRIDER_REDIS_URL", "make run")


@pytest.mark.parametrize("command", [["queue"], ["workers"]])
def test_redis_down_is_one_line(tmp_path: Path, command: list[str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    outrider(["migrate"], tmp_path)
    result = outrider(command, tmp_path, OUTRIDER_REDIS_URL=url)
    assert_one_line(result, "Redis", "unreachable")


def test_database_down_is_one_line_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://outrider:hunter2@127.0.0.1:{free_port()}/x"
    result = outrider(["keys", "create", "--owner", "a"], tmp_path, OUTRIDER_DATABASE_URL=url)
    assert_one_line(result, "database", "unreachable")
    assert "hunter2" not in result.stderr


def test_keys_create_says_which_database_it_wrote_to(tmp_path: Path) -> None:
    result = outrider(["keys", "create", "--owner", "a"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ork_")
    assert str(tmp_path / "data" / "outrider.db") in result.stderr

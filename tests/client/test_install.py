"""The client installs alone in a fresh virtualenv (no server packages) and works against a
running API: submit, wait, events and a typed error."""

from __future__ import annotations

import asyncio
import json
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import RunWorker
from tests.helpers import TargetServer

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys, uuid
from outrider_client import Outrider, NotFoundError
url, key, target = sys.argv[1:4]
with Outrider(url, key) as client:
    job = client.submit({"kind": "http", "input": {"url": target}}, wait=30)
    later = client.submit({"kind": "http", "input": {"url": target}})
    done = client.wait(later.id, timeout=30)
    events = [event.type for event in client.events(later.id)]
    try:
        client.get_job(uuid.uuid4())
        code = None
    except NotFoundError as exc:
        code = exc.code
import httpx, pydantic
mods = sorted(m.split(".")[0] for m in sys.modules)
print(json.dumps({"status": job.status, "waited": done.status, "events": events,
                  "code": code, "modules": mods}))
"""


WHEELS = ROOT / ".venv" / "client-wheels"  # kept between runs; `make clean` removes it


def wheel_cache() -> Path:
    """The client's dependencies as wheels, at the lock's versions (downloaded once per lock),
    and setuptools to build the client: installs from it need no index."""
    import hashlib
    import subprocess

    lock = ROOT / "requirements.lock"
    stamp = WHEELS / (hashlib.sha256(lock.read_bytes()).hexdigest()[:16] + ".stamp")
    if not stamp.exists():
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "-d", str(WHEELS)]
        subprocess.run([*pip, "-c", str(lock), "httpx", "pydantic"], check=True)
        subprocess.run([*pip, "setuptools>=68"], check=True)
        stamp.touch()
    return WHEELS


@pytest.fixture(scope="session")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv without the system's packages, with only outrider-client installed (and
    its two dependencies, at the versions the lock pins); returns its python."""
    import subprocess

    where = tmp_path_factory.mktemp("client-venv")
    venv.create(where, with_pip=False, system_site_packages=False)
    python = where / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    offline = ["--no-index", "--find-links", str(wheel_cache())]
    subprocess.run([*install, *offline, str(ROOT / "client")], check=True)
    return python


def installed(python: Path) -> set[str]:
    import subprocess

    listing = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "list", "--format=json"],
        check=True,
        capture_output=True,
        text=True,
    )
    return {package["name"].lower() for package in json.loads(listing.stdout)}


async def test_the_client_alone_runs_against_a_live_api(
    client_venv: Path,
    live_api: str,
    auth: dict[str, str],
    target: TargetServer,
    run_worker: RunWorker,
) -> None:
    packages = installed(client_venv)
    assert "outrider-client" in packages
    assert not packages & {"outrider", "fastapi", "sqlalchemy", "redis", "arq", "mcp"}
    key = auth["Authorization"].removeprefix("Bearer ")
    async with run_worker():
        process = await asyncio.create_subprocess_exec(
            str(client_venv),
            "-c",
            SCRIPT,
            live_api,
            key,
            target.url("/ok"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=client_venv.parent,  # not the repository: nothing importable by accident
        )
        out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()[-2000:]
    answer = json.loads(out)
    assert answer["status"] == "succeeded"
    assert answer["waited"] == "succeeded"
    assert answer["events"] == ["queued", "started", "succeeded"]
    assert answer["code"] == "not_found"
    assert not {"shared", "api", "outrider", "fastapi"} & set(answer["modules"])

"""compose.yaml, the Dockerfile and the Procfile agree with each other and with the CLI
(no Docker engine here: they are checked by reading)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def stages() -> dict[str, str]:
    """The Dockerfile's stages: name -> its text."""
    text = (ROOT / "Dockerfile").read_text()
    parts = re.split(r"^FROM .+ AS (\S+)$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_compose_build_target_is_a_dockerfile_stage() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    built = {
        name: service["build"]["target"]
        for name, service in compose["services"].items()
        if "build" in service
    }
    assert built["browser-worker"] == "browser-worker"
    assert built["api"] == built["worker"] == "app"
    assert set(built.values()) <= set(stages())


def test_only_the_browser_image_has_chromium() -> None:
    images = stages()
    assert "chromium" not in images["app"]
    assert "chromium" in images["browser-worker"]
    assert re.search(r"^EXPOSE .*\b8000\b.*\b9464\b", images["app"], flags=re.MULTILINE)


def test_compose_refuses_to_start_without_its_secrets() -> None:
    text = (ROOT / "compose.yaml").read_text()
    for name in ("OUTRIDER_SECRET_KEY", "POSTGRES_PASSWORD"):
        uses = re.findall(r"\$\{" + name + r"([^}]*)\}", text)
        assert uses, name
        assert all(use.startswith(":?") for use in uses), (name, uses)


def test_the_procfile_runs_a_worker_for_every_queue() -> None:
    from shared.specs import QUEUES

    procfile = (ROOT / "Procfile").read_text()
    served = set(re.findall(r"outrider worker --queue (\w+)", procfile))
    assert served == set(QUEUES)

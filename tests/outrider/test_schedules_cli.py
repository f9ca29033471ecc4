"""`outrider schedules`: a readable table of schedules and their next fire times."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from outrider.cli import app
from shared.db import create_engine, create_sessionmaker
from shared.models import Schedule
from shared.repositories.owner import get_or_create_owner
from shared.settings import Settings


async def _owner_with_schedules(settings: Settings, name: str, crons: list[str]) -> None:
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine).begin() as session:
            owner = await get_or_create_owner(session, name)
            for index, cron in enumerate(crons):
                session.add(
                    Schedule(
                        id=uuid.uuid4(),
                        owner_id=owner.id,
                        cron=cron,
                        timezone="Europe/Berlin",
                        job={"kind": "http", "input": {"url": "http://127.0.0.1:9/"}},
                        enabled=index == 0,
                        overlap="allow",
                        misfire="skip",
                        next_fire_at=datetime(2030, 1, 1, tzinfo=UTC),
                        missed_count=index,
                    )
                )
    finally:
        await engine.dispose()


def test_lists_an_owners_schedules_with_next_fire_times(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, other = f"cli-{uuid.uuid4().hex[:8]}", f"cli-{uuid.uuid4().hex[:8]}"
    asyncio.run(_owner_with_schedules(settings, name, ["0 9 * * *", "@hourly"]))
    asyncio.run(_owner_with_schedules(settings, other, ["*/5 * * * *"]))
    monkeypatch.setattr("outrider.cli.get_settings", lambda: settings)

    result = CliRunner().invoke(app, ["schedules", "--owner", name, "--count", "2"])
    assert result.exit_code == 0, result.output
    header, active, paused = result.output.splitlines()
    assert header.split() == ["ID", "OWNER", "CRON", "TIMEZONE", "STATE", "MISSED", "NEXT",
                              "FIRE", "TIMES", "(UTC)"]  # fmt: skip
    assert active.split()[1:4] == [name, "0", "9"]
    assert "Europe/Berlin" in active
    assert "active" in active
    times = active.split("active")[1].split()[1:]
    assert len(times) == 2
    when = [datetime.strptime(t.rstrip(","), "%Y-%m-%dT%H:%M:%SZ") for t in times]
    assert all(t.hour in (7, 8) and t.minute == 0 for t in when)  # 09:00 Berlin is 07/08 UTC
    assert "@hourly" in paused
    assert "paused" in paused
    assert other not in result.output

    everyone = CliRunner().invoke(app, ["schedules"])
    assert everyone.exit_code == 0
    assert name in everyone.output
    assert other in everyone.output

    none = CliRunner().invoke(app, ["schedules", "--owner", "nobody-" + uuid.uuid4().hex])
    assert none.exit_code == 0
    assert "No schedules" in none.output

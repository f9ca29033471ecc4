"""What every engine gets to do its work: the job, its agent profile and the shared clients."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from shared.egress import EgressPolicy
from shared.models import Agent, Job
from shared.settings import Settings


@dataclass(frozen=True)
class EngineContext:
    """One attempt's view of the world. `secrets` are decrypted for this attempt only."""

    job: Job
    agent: Agent
    secrets: dict[str, str]
    settings: Settings
    policy: EgressPolicy
    http: aiohttp.ClientSession


Engine = Callable[[EngineContext], Awaitable[dict[str, Any]]]

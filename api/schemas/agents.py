"""Request and response bodies of the agent routes (api/routes/agents.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.config import JsonDict

from shared.headers import HeaderMap, HeaderValue
from shared.proxies import MAX_PROXIES, ProxyRotation
from shared.specs import URL_SCHEMA, Locale, RequestModel, Timezone

DomainList = list[Annotated[str, Field(min_length=1, max_length=253)]]
SecretName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")]
# A dict's key pattern is stated as `patternProperties`: no other key is allowed.
SECRET_NAMES: JsonDict = {
    "additionalProperties": False,
    "propertyNames": {"pattern": r"^[A-Za-z0-9_.-]{1,100}$"},
}


class ProxyConfig(RequestModel):
    """One outbound proxy: where it is, and the secret holding its `user:password`."""

    url: str = Field(
        min_length=1,
        max_length=2048,
        description="`http://host:port`, `https://host:port` or `socks5://host:port`, without "
        "credentials.",
    )
    auth_secret: SecretName | None = Field(
        default=None,
        description="The name of one of the agent's secrets whose value is `user:password`.",
    )


class ProxyOut(BaseModel):
    url: str
    auth_secret: str | None = None


class AgentProfile(RequestModel):
    headers: HeaderMap | None = None
    user_agent: Annotated[HeaderValue, Field(max_length=500)] | None = None
    timeout_s: float | None = Field(default=None, gt=0, le=86400)
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    backoff_base_s: float | None = Field(default=None, gt=0, le=3600)
    backoff_max_s: float | None = Field(default=None, gt=0, le=86400)
    host_rate_per_s: float | None = Field(default=None, gt=0, le=10000)
    host_concurrency: int | None = Field(default=None, ge=1, le=1000)
    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=100000,
        description="Jobs of this agent running at once, across all workers; more wait, "
        "queued. Null: no limit.",
    )
    obey_robots: bool = Field(
        default=True,
        description="Obey robots.txt (and its Crawl-delay) for fetch, render and scrape jobs.",
    )
    allowed_domains: DomainList | None = Field(default=None, max_length=1000)
    blocked_domains: DomainList | None = Field(default=None, max_length=1000)
    webhook_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="Every job of this agent that ends is POSTed here, signed.",
        json_schema_extra=URL_SCHEMA,
    )
    # Who the agent's jobs say they are (worker/identity.py).
    stealth: bool = Field(
        default=False,
        description="Render with playwright-stealth and a coherent fingerprint (user agent, "
        "platform, languages, locale and time zone agree).",
    )
    locale: Locale | None = Field(
        default=None, description="The jobs' default `locale` (BCP 47, e.g. `de-DE`)."
    )
    timezone: Timezone | None = Field(
        default=None, description="The renders' default `timezone` (IANA, e.g. `Europe/Berlin`)."
    )
    # Outbound proxies (docs/agents.md, "Proxies").
    proxies: list[ProxyConfig] | None = Field(
        default=None,
        max_length=MAX_PROXIES,
        description="The jobs' traffic (webhooks aside) goes out through these proxies.",
    )
    proxy_rotation: ProxyRotation | None = Field(
        default=None,
        description="How a job's proxy is chosen: `round_robin` (the default), `random`, or "
        "`sticky_host` (one proxy per target host, kept while it works).",
    )


class AgentCreate(AgentProfile):
    """A new agent. `secrets` are write-only: encrypted at rest, never returned."""

    name: str = Field(min_length=1, max_length=200)
    secrets: dict[SecretName, Annotated[str, Field(max_length=10000)]] = Field(
        default_factory=dict, max_length=100, json_schema_extra=SECRET_NAMES
    )
    webhook_secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=256,
        description="Write-only: the key webhooks are signed with. Left out, one is generated "
        "and returned once, in the response.",
    )


class AgentUpdate(AgentProfile):
    """A partial update. A secret set to null is removed."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    secrets: dict[SecretName, Annotated[str, Field(max_length=10000)] | None] | None = Field(
        default=None, max_length=100, json_schema_extra=SECRET_NAMES
    )


class AgentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    id: uuid.UUID
    name: str
    is_default: bool
    headers: dict[str, str]
    user_agent: str | None
    timeout_s: float | None
    max_attempts: int | None
    backoff_base_s: float | None
    backoff_max_s: float | None
    host_rate_per_s: float | None
    host_concurrency: int | None
    max_concurrency: int | None = None
    obey_robots: bool
    allowed_domains: list[str]
    blocked_domains: list[str]
    secret_names: list[str] = Field(
        description="Names of the agent's secrets (values are never shown)."
    )
    webhook_url: str | None = None
    stealth: bool = False
    locale: str | None = None
    timezone: str | None = None
    proxies: list[ProxyOut] = Field(default_factory=list)
    proxy_rotation: str = "round_robin"
    has_webhook_secret: bool = Field(
        validation_alias="webhook_secret_ciphertext",
        description="Whether the agent has a webhook signing secret (it is never shown again).",
    )
    created_at: datetime
    updated_at: datetime

    @field_validator("has_webhook_secret", mode="before")
    @classmethod
    def _present(cls, value: object) -> bool:
        return bool(value)


class AgentCreated(AgentOut):
    webhook_secret: str | None = Field(
        description="The generated webhook secret, shown this once (null when the request "
        "gave one)."
    )


class AgentList(BaseModel):
    items: list[AgentOut]
    next_cursor: str | None


class WebhookSecretOut(BaseModel):
    agent_id: uuid.UUID
    webhook_secret: str = Field(description="The new secret, shown this once.")


class SessionOut(BaseModel):
    """A session of an agent: its name and when a job last wrote it (never its cookies)."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    created_at: datetime
    updated_at: datetime


class SessionList(BaseModel):
    items: list[SessionOut]

"""Job specs: what a caller may submit, one pydantic model per kind, discriminated on `kind`."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.jsonsafe import find_bad_value

HEADER_NAME = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"


class StrictModel(BaseModel):
    """Unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RequestModel(StrictModel):
    """A request body: refuses values that PostgreSQL or JSON clients cannot hold."""

    @model_validator(mode="before")
    @classmethod
    def _clean_values(cls, data: Any) -> Any:
        problem = find_bad_value(data)
        if problem:
            raise ValueError(problem)
        return data


class HttpAuth(StrictModel):
    """Inject an agent secret: as `Authorization: Bearer <secret>` or as a named header."""

    secret: str = Field(min_length=1, max_length=100, description="Name of an agent secret.")
    scheme: Literal["bearer", "header"] = "bearer"
    header: str = Field(default="Authorization", max_length=100, pattern=HEADER_NAME)


JsonScalar = str | int | float | bool


class HttpInput(StrictModel):
    """Input of an `http` job: one call to an external HTTP API."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "GET"
    url: str = Field(min_length=1, max_length=2048)
    headers: dict[Annotated[str, Field(pattern=HEADER_NAME, max_length=100)], str] = Field(
        default_factory=dict, max_length=64
    )
    params: dict[str, JsonScalar | list[JsonScalar]] = Field(default_factory=dict, max_length=100)
    json_body: Any = Field(default=None, alias="json")
    text: str | None = Field(default=None, max_length=1024 * 1024)
    auth: HttpAuth | None = None
    timeout_s: float | None = Field(default=None, gt=0, le=3600)
    expected_status: list[Annotated[int, Field(ge=100, le=599)]] | None = Field(
        default=None, max_length=100
    )

    @model_validator(mode="after")
    def _one_body(self) -> HttpInput:
        if self.json_body is not None and self.text is not None:
            raise ValueError("give either `json` or `text`, not both")
        for value in self.headers.values():
            if any(ch in value for ch in "\r\n"):
                raise ValueError("header values must not contain CR or LF")
        return self


class JobSpecBase(RequestModel):
    agent_id: uuid.UUID | None = None
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    timeout_s: float | None = Field(default=None, gt=0, le=86400)


class HttpJobSpec(JobSpecBase):
    """Call an external HTTP API."""

    kind: Literal["http"]
    input: HttpInput


JobSpec = Annotated[HttpJobSpec, Field(discriminator="kind")]
JOB_KINDS: dict[str, str] = {"http": "default"}
"""Every job kind and the queue that runs it."""

QUEUES = ("default", "browser")


def input_model_for(kind: str) -> type[StrictModel]:
    """The input model of a kind (the worker re-validates stored input with it)."""
    models: dict[str, type[StrictModel]] = {"http": HttpInput}
    return models[kind]

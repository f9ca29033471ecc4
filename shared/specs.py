"""Job specs: what a caller may submit, one pydantic model per kind, discriminated on `kind`."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    ModelWrapValidatorHandler,
    Tag,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict, JsonValue
from pydantic_core import PydanticCustomError

from shared.headers import HeaderMap, HeaderName
from shared.jsonsafe import find_bad_value
from shared.urls import pattern_problem

MAX_DELAY = timedelta(days=30)
MAX_DELAY_S = MAX_DELAY.total_seconds()


class StrictModel(BaseModel):
    """Unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _both(first: str, second: str) -> JsonDict:
    """A JSON Schema of an object that has both fields set (not null): what `not` refuses."""
    set_: JsonDict = {"not": {"type": "null"}}
    properties: JsonDict = {first: set_, second: set_}
    return {"required": [first, second], "properties": properties}


# What the schema states of a URL: http(s) and a host name (the egress policy checks the rest,
# and also accepts the IP literals it allows; shared/egress.py).
URL_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,63}"
    r"([/?#][A-Za-z0-9._~!$&'()*+,;=:@/?#-]*)?$"
)
URL_SCHEMA: JsonDict = {"pattern": URL_PATTERN}


class RequestModel(StrictModel):
    """A request body: refuses values that PostgreSQL or JSON clients cannot hold."""

    @model_validator(mode="wrap")
    @classmethod
    def _clean_values(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        problem = find_bad_value(data)
        if problem:
            # The fields' own errors first: a NUL in a header is an `invalid_header`.
            handler(data)
            raise ValueError(problem)
        return handler(data)


class HttpAuth(StrictModel):
    """Inject an agent secret: as `Authorization: Bearer <secret>` or as a named header."""

    secret: str = Field(min_length=1, max_length=100, description="Name of an agent secret.")
    scheme: Literal["bearer", "header"] = "bearer"
    header: HeaderName = "Authorization"


JsonScalar = str | int | float | bool

INVALID_SESSION_NAME = "invalid_session_name"
INVALID_LOCALE = "invalid_locale"
INVALID_TIMEZONE = "invalid_timezone"
REACH_ERROR_CODES = (INVALID_SESSION_NAME, INVALID_LOCALE, INVALID_TIMEZONE)
"""Validation errors of `session`, `locale` and `timezone` whose type is the API's error code."""
SESSION_NAME_MAX = 100
_SESSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# BCP 47, the usual subset: language, optional script, optional region, optional variants.
_LOCALE = re.compile(
    r"[a-zA-Z]{2,3}(?:-[a-zA-Z]{4})?(?:-(?:[a-zA-Z]{2}|[0-9]{3}))?"
    r"(?:-(?:[a-zA-Z0-9]{5,8}|[0-9][a-zA-Z0-9]{3}))*"
)
LOCALE_MAX = 35


def check_session_name(value: str) -> str:
    """A session's name: 1-100 of `A-Z a-z 0-9 _ . -`, starting with a letter or digit."""
    if not (len(value) <= SESSION_NAME_MAX and _SESSION_NAME.fullmatch(value)):
        raise PydanticCustomError(
            INVALID_SESSION_NAME,
            "A session name is 1 to {most} letters, digits, `_`, `.` or `-`, starting with a "
            "letter or digit.",
            {"most": SESSION_NAME_MAX},
        )
    return value


def _check_locale(value: str) -> str:
    if not (len(value) <= LOCALE_MAX and _LOCALE.fullmatch(value)):
        raise PydanticCustomError(
            INVALID_LOCALE,
            "`locale` is a BCP 47 language tag such as `de-DE`, `en` or `zh-Hant-TW`.",
        )
    return value


NOT_ZONES = frozenset({"localtime", "Factory"})


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    import zoneinfo

    return frozenset(zoneinfo.available_timezones())


def _check_timezone(value: str) -> str:
    if value not in _timezones() or value in NOT_ZONES:
        raise PydanticCustomError(
            INVALID_TIMEZONE, "`timezone` is an IANA time zone name such as `Europe/Berlin`."
        )
    return value


SessionName = Annotated[
    str,
    Field(
        description="A cookie jar and browser storage kept for this agent under this name "
        "(read when the job starts, written back when it succeeds; one job of a session at a "
        "time, but a crawl's pages share it).",
        json_schema_extra={
            "minLength": 1,
            "maxLength": SESSION_NAME_MAX,
            "pattern": f"^{_SESSION_NAME.pattern}$",
        },
    ),
    AfterValidator(check_session_name),
]
Locale = Annotated[
    str,
    Field(
        description="A BCP 47 language tag (`de-DE`): sets `Accept-Language`, and the "
        "browser's locale for a render.",
        json_schema_extra={
            "minLength": 2,
            "maxLength": LOCALE_MAX,
            "pattern": f"^{_LOCALE.pattern}$",
        },
    ),
    AfterValidator(_check_locale),
]
Timezone = Annotated[
    str,
    Field(
        description="An IANA time zone (`Europe/Berlin`).",
        json_schema_extra=lambda schema: schema.update(enum=sorted(_timezones() - NOT_ZONES)),
    ),
    AfterValidator(_check_timezone),
]


class Geolocation(StrictModel):
    """Where the browser says it is (the `geolocation` permission is granted to the page)."""

    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    accuracy: float | None = Field(default=None, ge=0, le=100_000, description="Metres.")


class HttpInput(StrictModel):
    """Input of an `http` job: one call to an external HTTP API."""

    model_config = ConfigDict(json_schema_extra={"not": _both("json", "text")})

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "GET"
    url: str = Field(min_length=1, max_length=2048, json_schema_extra=URL_SCHEMA)
    headers: HeaderMap = Field(default_factory=dict)
    params: dict[str, JsonScalar | list[JsonScalar]] = Field(default_factory=dict, max_length=100)
    json_body: Any = Field(default=None, alias="json")
    text: str | None = Field(default=None, max_length=1024 * 1024)
    auth: HttpAuth | None = None
    timeout_s: float | None = Field(default=None, gt=0, le=3600)
    expected_status: list[Annotated[int, Field(ge=100, le=599)]] | None = Field(
        default=None, max_length=100
    )
    session: SessionName | None = None
    locale: Locale | None = None

    @model_validator(mode="after")
    def _one_body(self) -> HttpInput:
        if self.json_body is not None and self.text is not None:
            raise ValueError("give either `json` or `text`, not both")
        return self


Format = Literal["markdown", "text", "html", "raw_html", "links", "metadata", "structured"]
FORMAT_NAMES = frozenset(get_args(Format))
PROMPT_MAX_CHARS = 10_000
# Codes of the pydantic errors raised here (api/errors.py answers 422 with them).
FORMAT_ERROR_CODES = ("unknown_format", "invalid_schema", "prompt_too_long")


def _check_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    from jsonschema import validators
    from jsonschema.exceptions import SchemaError

    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise PydanticCustomError(
            "invalid_schema",
            "`schema` is not a valid JSON Schema: {reason}",
            {"reason": exc.message},
        ) from None
    return schema


def _check_prompt(prompt: str | None) -> str | None:
    if prompt is not None and len(prompt) > PROMPT_MAX_CHARS:
        raise PydanticCustomError(
            "prompt_too_long",
            "`prompt` may be at most {limit} characters.",
            {"limit": PROMPT_MAX_CHARS},
        )
    return prompt


class JsonFormat(StrictModel):
    """Extraction into a JSON Schema by a language model (OUTRIDER_LLM_BASE_URL)."""

    type: Literal["json"]
    json_schema: Annotated[dict[str, Any], AfterValidator(_check_json_schema)] = Field(
        alias="schema", description="A JSON Schema the answer must validate against."
    )
    prompt: Annotated[str | None, AfterValidator(_check_prompt)] = Field(
        default=None, description="What to extract (at most 10,000 characters)."
    )


def _known_format(value: Any) -> Any:
    if isinstance(value, str) and value not in FORMAT_NAMES:
        raise PydanticCustomError("unknown_format", "Unknown format '{name}'.", {"name": value})
    if not isinstance(value, str | dict | JsonFormat):
        raise PydanticCustomError("unknown_format", "A format is a name or a `json` object.")
    if isinstance(value, dict) and value.get("type") != "json":
        raise PydanticCustomError(
            "unknown_format", 'A format object needs `"type": "json"`.', {"name": value.get("type")}
        )
    return value


def _format_tag(value: Any) -> str:
    return "json" if isinstance(value, dict | JsonFormat) else "name"


# One branch is tried per item (a name or a `json` object), so an error names only its own.
AnyFormat = Annotated[
    Annotated[Format, Tag("name")] | Annotated[JsonFormat, Tag("json")],
    Discriminator(_format_tag),
    BeforeValidator(_known_format),
]


def _default_formats() -> list[AnyFormat]:
    return ["markdown"]


class ExtractRule(StrictModel):
    """One field of a CSS-selector extraction schema."""

    selector: str = Field(min_length=1, max_length=500)
    attr: str | None = Field(default=None, max_length=100, description="Attribute, else text.")
    all: bool = Field(default=False, description="Every match as a list, else the first.")


class FetchInput(StrictModel):
    """Input of a `fetch` job: GET a page with aiohttp and turn it into LLM-ready output."""

    url: str = Field(min_length=1, max_length=2048, json_schema_extra=URL_SCHEMA)
    formats: list[AnyFormat] = Field(default_factory=_default_formats, min_length=1, max_length=8)
    extract: dict[Annotated[str, Field(max_length=100)], str | ExtractRule] | None = Field(
        default=None, max_length=100
    )
    headers: HeaderMap = Field(default_factory=dict)
    timeout_s: float | None = Field(default=None, gt=0, le=3600)
    markdown_links: bool = Field(
        default=False, description="Keep link targets in `markdown`: `[text](absolute URL)`."
    )
    max_age_s: int = Field(
        default=0,
        ge=0,
        le=365 * 86400,
        description="Return this owner's result for the same URL and output options if it is "
        "younger than this (`cached: true`), without a request; 0: never.",
    )
    session: SessionName | None = None
    locale: Locale | None = None

    @model_validator(mode="after")
    def _one_json_format(self) -> FetchInput:
        if len(self.formats) - len(self.output_formats) > 1:
            raise ValueError("give at most one `json` format")
        return self

    @property
    def output_formats(self) -> list[str]:
        """The named formats (`markdown`, ...), without a `json` format."""
        return [f for f in self.formats if isinstance(f, str)]

    @property
    def json_format(self) -> JsonFormat | None:
        """The `json` format, if asked for."""
        return next((f for f in self.formats if isinstance(f, JsonFormat)), None)


class WaitFor(StrictModel):
    """What a render waits for after load: exactly one of the three."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["selector"], "properties": {"selector": {"type": "string"}}},
                {"required": ["ms"], "properties": {"ms": {"type": "integer"}}},
                {"required": ["network_idle"], "properties": {"network_idle": {"const": True}}},
            ]
        }
    )

    selector: str | None = Field(default=None, min_length=1, max_length=500)
    ms: int | None = Field(default=None, ge=0, le=60_000)
    network_idle: bool | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> WaitFor:
        given = [v for v in (self.selector, self.ms, self.network_idle) if v not in (None, False)]
        if len(given) != 1:
            raise ValueError("give exactly one of `selector`, `ms` or `network_idle: true`")
        return self


ACTION_NEEDS = {
    "click": ["selector"],
    "fill": ["selector", "value"],
    "press": ["key"],
    "wait": ["ms"],
}
_ACTION_TYPES = {"selector": "string", "value": "string", "key": "string", "ms": "integer"}


class Action(StrictModel):
    """One bounded browser action."""

    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
                    "then": {
                        "required": list[JsonValue](needs),
                        "properties": {name: {"type": _ACTION_TYPES[name]} for name in needs},
                    },
                }
                for kind, needs in ACTION_NEEDS.items()
            ]
        }
    )

    type: Literal["click", "fill", "press", "scroll", "wait"]
    selector: str | None = Field(default=None, min_length=1, max_length=500)
    value: str | None = Field(default=None, max_length=10_000, description="Text for `fill`.")
    key: str | None = Field(default=None, max_length=50, description="Key for `press`.")
    ms: int | None = Field(default=None, ge=0, le=60_000, description="Pause for `wait`.")
    y: int | None = Field(default=None, ge=-100_000, le=100_000, description="Pixels to scroll.")

    @model_validator(mode="after")
    def _needs(self) -> Action:
        missing = [f for f in ACTION_NEEDS.get(self.type, []) if getattr(self, f) is None]
        if missing:
            raise ValueError(f"`{self.type}` needs {', '.join(missing)}")
        return self


class Screenshot(StrictModel):
    full_page: bool = False


class RenderInput(FetchInput):
    """Input of a `render` job: load the page in Chromium, then extract from the DOM."""

    wait_for: WaitFor | None = None
    actions: list[Action] = Field(default_factory=list, max_length=50)
    screenshot: Screenshot | None = None
    block_resources: list[Literal["image", "font", "media"]] = Field(
        default_factory=list, max_length=3
    )
    settle_ms: int = Field(
        default=5000,
        ge=0,
        le=60_000,
        description="After load, wait at most this long for the page to settle (no request in "
        "flight for 500 ms, no DOM change for 300 ms); 0 turns it off.",
    )
    timezone: Timezone | None = None
    geolocation: Geolocation | None = None

    @model_validator(mode="after")
    def _bounded_waiting(self) -> RenderInput:
        waited = sum(a.ms or 0 for a in self.actions if a.type == "wait")
        waited += self.wait_for.ms or 0 if self.wait_for else 0
        if waited > 60_000:
            raise ValueError("actions and wait_for may wait at most 60 s in all")
        return self


class ScrapeInput(RenderInput):
    """Input of a `scrape` job: fetch, and escalate to the browser when the page needs it."""

    render: Literal["auto", "http", "browser"] = "auto"


INVALID_PATTERN = "invalid_pattern"
MAX_DEPTH_OUT_OF_RANGE = "max_depth_out_of_range"
PAGE_URL_NOT_ALLOWED = "page_url_not_allowed"
SPEC_ERROR_CODES = (INVALID_PATTERN, MAX_DEPTH_OUT_OF_RANGE, PAGE_URL_NOT_ALLOWED)
"""Validation errors of crawl and map inputs whose type is the API's error code."""
MAX_DEPTH = 20


class CrawlPageSpec(StrictModel):
    """The spec of each page of a crawl: everything a `fetch` or `scrape` input takes except
    `url`. With `render` set, pages are `scrape` jobs; without, `fetch` jobs."""

    @model_validator(mode="before")
    @classmethod
    def _no_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and "url" in data:
            raise PydanticCustomError(
                PAGE_URL_NOT_ALLOWED, "`page` takes no `url`: the crawl finds the pages' URLs."
            )
        return data

    formats: list[AnyFormat] = Field(default_factory=_default_formats, min_length=1, max_length=8)
    extract: dict[Annotated[str, Field(max_length=100)], str | ExtractRule] | None = Field(
        default=None, max_length=100
    )
    headers: HeaderMap = Field(default_factory=dict)
    timeout_s: float | None = Field(default=None, gt=0, le=3600)
    markdown_links: bool = False
    max_age_s: int = Field(default=0, ge=0, le=365 * 86400, description="As a `fetch`'s.")
    render: Literal["auto", "http", "browser"] | None = None
    wait_for: WaitFor | None = None
    actions: list[Action] = Field(default_factory=list, max_length=50)
    screenshot: Screenshot | None = None
    block_resources: list[Literal["image", "font", "media"]] = Field(
        default_factory=list, max_length=3
    )
    settle_ms: int | None = Field(default=None, ge=0, le=60_000)
    locale: Locale | None = None
    timezone: Timezone | None = None
    geolocation: Geolocation | None = None

    def page_kind(self) -> Literal["fetch", "scrape"]:
        """`scrape` when a render mode is given (or anything only a browser does), else `fetch`."""
        browserish = self.wait_for or self.actions or self.screenshot or self.block_resources
        placed = self.timezone is not None or self.geolocation is not None
        return "scrape" if self.render is not None or browserish or placed else "fetch"


SitemapMode = Literal["include", "skip", "only"]
# What the schema states of a pattern (shared/urls.py checks more: balanced brackets, a glob).
Patterns = list[
    Annotated[
        str,
        Field(max_length=500, json_schema_extra={"pattern": r"^[/*][^\x00-\x20\x7f-\x9f\[\]]*$"}),
    ]
]


def _check_patterns(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        if problem := pattern_problem(pattern):
            raise PydanticCustomError(
                INVALID_PATTERN, "Invalid pattern: {problem}.", {"problem": problem}
            )
    return patterns


def _check_depth(value: int) -> int:
    if not 0 <= value <= MAX_DEPTH:
        raise PydanticCustomError(
            MAX_DEPTH_OUT_OF_RANGE, "`max_depth` is 0 to {most}.", {"most": MAX_DEPTH}
        )
    return value


DEPTH_SCHEMA: JsonDict = {"minimum": 0, "maximum": MAX_DEPTH}


class _DiscoveryInput(StrictModel):
    """What `crawl` and `map` share: where to start and which URLs are in scope."""

    url: str = Field(min_length=1, max_length=2048, json_schema_extra=URL_SCHEMA)
    include_paths: Patterns = Field(default_factory=list, max_length=100)
    exclude_paths: Patterns = Field(default_factory=list, max_length=100)
    allow_subdomains: bool = False
    ignore_query: bool = False
    sitemap: SitemapMode = "include"

    @field_validator("include_paths", "exclude_paths")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        return _check_patterns(value)

    @field_validator("max_depth", check_fields=False)
    @classmethod
    def _depth(cls, value: int) -> int:
        return _check_depth(value)


class CrawlInput(_DiscoveryInput):
    """Input of a `crawl` job: every page of a site, each a job of its own."""

    max_depth: int = Field(
        default=2, description="0: the start page only.", json_schema_extra=DEPTH_SCHEMA
    )
    limit: int = Field(
        default=1000, ge=1, description="Pages at most (no more than OUTRIDER_CRAWL_MAX_PAGES)."
    )
    page: CrawlPageSpec = Field(default_factory=CrawlPageSpec)
    page_webhooks: bool = Field(
        default=False, description="Also announce each page's end to the crawl's `webhook_url`."
    )
    session: SessionName | None = Field(
        default=None,
        description="Every page uses this session (see a fetch's `session`). The pages "
        "share it without its lock, so they run as concurrently as without one: each reads it "
        "when it starts; a page's changes are written back only if no other job holds the "
        "session and no other page wrote first.",
    )


class MapInput(_DiscoveryInput):
    """Input of a `map` job: a site's URLs (sitemaps and links), without page content."""

    max_depth: int = Field(
        default=0, description="0: the start page's links only.", json_schema_extra=DEPTH_SCHEMA
    )
    limit: int = Field(default=5000, ge=1, description="URLs at most.")
    search: str | None = Field(
        default=None, min_length=1, max_length=200, description="URLs containing it come first."
    )
    session: SessionName | None = Field(
        default=None,
        description="Every page the map reads uses this session (see a fetch's `session`); "
        "robots.txt is read without it.",
    )


class JobSpecBase(RequestModel):
    model_config = ConfigDict(json_schema_extra={"not": _both("run_at", "delay_s")})

    agent_id: uuid.UUID | None = None
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    timeout_s: float | None = Field(default=None, gt=0, le=86400)
    webhook_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="POSTed (signed with the agent's webhook secret) when the job ends.",
        json_schema_extra=URL_SCHEMA,
    )
    run_at: AwareDatetime | None = Field(
        default=None,
        description="Run no sooner than this (RFC 3339 with an offset); a past time is now.",
    )
    delay_s: float | None = Field(
        default=None, ge=0, le=MAX_DELAY_S, description="Run no sooner than this many seconds."
    )
    priority: int = Field(
        default=5,
        ge=0,
        le=9,
        description="Higher first among a queue's due jobs; a job that has waited "
        "OUTRIDER_PRIORITY_AGING_S is ahead of any newer one.",
    )

    @model_validator(mode="after")
    def _one_delay(self) -> JobSpecBase:
        if self.run_at is not None and self.delay_s is not None:
            raise ValueError("give either `run_at` or `delay_s`, not both")
        if self.run_at is not None and self.run_at > datetime.now(UTC) + MAX_DELAY:
            raise ValueError(f"`run_at` may be at most {MAX_DELAY.days} days ahead")
        return self

    def due_at(self, now: datetime) -> datetime:
        """When the job may first run: `run_at`, `delay_s` after `now`, else `now`."""
        if self.run_at is not None:
            return max(self.run_at.astimezone(UTC), now)
        if self.delay_s:
            return now + timedelta(seconds=self.delay_s)
        return now


class HttpJobSpec(JobSpecBase):
    """Call an external HTTP API."""

    kind: Literal["http"]
    input: HttpInput


class FetchJobSpec(JobSpecBase):
    """Fetch a page over HTTP and extract it."""

    kind: Literal["fetch"]
    input: FetchInput


class RenderJobSpec(JobSpecBase):
    """Render a page in a browser and extract it."""

    kind: Literal["render"]
    input: RenderInput


class ScrapeJobSpec(JobSpecBase):
    """Fetch or render, whichever the page needs."""

    kind: Literal["scrape"]
    input: ScrapeInput


class CrawlJobSpec(JobSpecBase):
    """Crawl a site: each page a `fetch` (or `scrape`) job of its own."""

    kind: Literal["crawl"]
    input: CrawlInput


class MapJobSpec(JobSpecBase):
    """List a site's URLs from its sitemaps and links."""

    kind: Literal["map"]
    input: MapInput


AnyJobSpec = HttpJobSpec | FetchJobSpec | RenderJobSpec | ScrapeJobSpec | CrawlJobSpec | MapJobSpec
JobSpec = Annotated[AnyJobSpec, Field(discriminator="kind")]

INPUT_MODELS: dict[str, type[StrictModel]] = {
    "http": HttpInput,
    "fetch": FetchInput,
    "render": RenderInput,
    "scrape": ScrapeInput,
    "crawl": CrawlInput,
    "map": MapInput,
}
"""Every job kind and its input model (the worker re-validates stored input with it)."""

JOB_KINDS = tuple(INPUT_MODELS)
QUEUES = ("default", "browser")


def queue_for(spec: AnyJobSpec) -> str:
    """The queue that runs a job: the browser queue for anything that may need Chromium (a
    `scrape` that may escalate runs where the browser is, fetching first)."""
    if spec.kind == "render" or (spec.kind == "scrape" and spec.input.render != "http"):
        return "browser"
    return "default"

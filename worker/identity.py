"""Who a job says it is: its locale (`Accept-Language`, the browser's language), its time zone
and place, and, for an agent with `stealth: true`, one coherent browser fingerprint.

Locale: the job's `locale`, else its agent's. aiohttp kinds send `Accept-Language: de-DE,de;q=0.9`
(unless the job's own `headers` set one); a render gets it as Playwright's context `locale`
(navigator.language, Intl, and the header Chromium sends). Time zone: the job's `timezone`,
else the agent's (a render's context `timezone_id`). Geolocation: the job's, with the
`geolocation` permission granted to the page.

Stealth (`stealth_options`, `apply_stealth`): playwright-stealth's evasions on the context
(navigator.webdriver, plugins, languages, permissions, window.chrome, WebGL vendor, ...) and
context options that agree with them and with each other: the user agent (the agent's, else
this Chromium's own with `HeadlessChrome` made `Chrome`), navigator.platform read off that
user agent, navigator.languages from the locale (`de-DE`, `de`),
the locale and a time zone (the job's or agent's; else, with a locale naming a country, that
country's main zone, so a `de-DE` browser is not on UTC), a 1280x800 viewport on a 1920x1080
screen.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import TYPE_CHECKING, Any

from shared.models import Agent, Job

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext

SCREEN = {"width": 1920, "height": 1080}
# The usual zone of countries with many (zone.tab lists each country's zones, not in this order).
MAIN_ZONES = {
    "AR": "America/Argentina/Buenos_Aires", "AU": "Australia/Sydney", "BR": "America/Sao_Paulo",
    "CA": "America/Toronto", "CD": "Africa/Kinshasa", "CL": "America/Santiago",
    "CN": "Asia/Shanghai", "DE": "Europe/Berlin", "EC": "America/Guayaquil",
    "ES": "Europe/Madrid", "ID": "Asia/Jakarta", "KZ": "Asia/Almaty", "MN": "Asia/Ulaanbaatar",
    "MX": "America/Mexico_City", "MY": "Asia/Kuala_Lumpur", "NZ": "Pacific/Auckland",
    "PT": "Europe/Lisbon", "RU": "Europe/Moscow", "UA": "Europe/Kyiv", "US": "America/New_York",
    "UZ": "Asia/Tashkent",
}  # fmt: skip
_REGION = re.compile(r"-([A-Za-z]{2})(?:-|$)")


def job_locale(job: Job, agent: Agent) -> str | None:
    """The locale a job speaks: its own, else its agent's."""
    value = job.input.get("locale") or agent.locale
    return str(value) if value else None


def job_timezone(job: Job, agent: Agent) -> str | None:
    """The time zone a render is in: the job's, else its agent's."""
    value = job.input.get("timezone") or agent.timezone
    return str(value) if value else None


def accept_language(locale: str) -> str:
    """`de-DE` -> `de-DE,de;q=0.9`; a bare language is itself."""
    language = locale.split("-")[0]
    return locale if language == locale else f"{locale},{language};q=0.9"


def languages(locale: str) -> tuple[str, str]:
    """navigator.languages for a locale: (`de-DE`, `de`) (playwright-stealth takes two)."""
    language = locale.split("-")[0]
    return (locale, language) if language != locale else (locale, locale)


@functools.lru_cache(maxsize=1)
def _zones_by_country() -> dict[str, str]:
    """Each country's first zone in the tz database's zone.tab (from the `tzdata` package)."""
    zones: dict[str, str] = {}
    try:
        text = resources.files("tzdata").joinpath("zoneinfo/zone.tab").read_text()
    except (FileNotFoundError, ModuleNotFoundError):
        return zones
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) >= 3:
            zones.setdefault(fields[0].upper(), fields[2])
    return zones


def country_zone(locale: str) -> str | None:
    """The main time zone of the country a locale names (`de-DE` -> Europe/Berlin), if any."""
    match = _REGION.search(locale)
    if match is None:
        return None
    country = match.group(1).upper()
    return MAIN_ZONES.get(country) or _zones_by_country().get(country)


def platform_of(user_agent: str) -> str:
    """navigator.platform as the browser the user agent names would report it."""
    for marker, platform in (
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Win32"),
        ("Macintosh", "MacIntel"),
        ("Android", "Linux armv8l"),
    ):
        if marker in user_agent:
            return platform
    return "Linux x86_64"


def chrome_user_agent(browser_version: str) -> str:
    """The user agent of a desktop Chrome of this version on Linux (reduced, as Chrome sends)."""
    major = browser_version.split(".")[0] or "0"
    return (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{major}.0.0.0 Safari/537.36"
    )


def context_options(job: Job, agent: Agent, geolocation: dict[str, Any] | None) -> dict[str, Any]:
    """A render context's locale, time zone and place (stealth or not)."""
    options: dict[str, Any] = {}
    if (locale := job_locale(job, agent)) is not None:
        options["locale"] = locale
    if (timezone := job_timezone(job, agent)) is not None:
        options["timezone_id"] = timezone
    if geolocation is not None:
        options["geolocation"] = {k: v for k, v in geolocation.items() if v is not None}
        options["permissions"] = ["geolocation"]
    return options


def stealth_options(
    job: Job, agent: Agent, browser_version: str, options: dict[str, Any]
) -> dict[str, Any]:
    """The context options of a stealth render: `options` (from `context_options`) completed
    into one coherent fingerprint."""
    user_agent = agent.user_agent or chrome_user_agent(browser_version)
    locale = options.get("locale") or "en-US"
    stealthy = {
        **options,
        "user_agent": user_agent,
        "locale": locale,
        "screen": SCREEN,
    }
    if "timezone_id" not in options and (zone := country_zone(locale)) is not None:
        stealthy["timezone_id"] = zone
    return stealthy


async def apply_stealth(context: BrowserContext, options: dict[str, Any]) -> None:
    """playwright-stealth's evasions on a context made with `stealth_options`."""
    from playwright_stealth import Stealth

    user_agent = str(options["user_agent"])
    stealth = Stealth(
        navigator_languages_override=languages(str(options["locale"])),
        navigator_platform_override=platform_of(user_agent),
        navigator_user_agent_override=user_agent,
        # Chromium's own Sec-CH-UA names no HeadlessChrome (nor do its userAgentData brands,
        # which a header of ours would then contradict): left as Chromium sends it.
        sec_ch_ua=False,
    )
    await stealth.apply_stealth_async(context)

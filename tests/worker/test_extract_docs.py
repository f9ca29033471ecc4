"""`fetch` against real HTML nobody here wrote: Debian's PostgreSQL (DocBook) and Django (Sphinx)
manuals, served on loopback as they are installed.

`make install` (and so CI) installs the two packages when missing (`make debian-docs`); without
them these tests skip, which OUTRIDER_REQUIRE_SERVICES=1 turns into a failure. The pages are a
fixed sample (every n-th file, plus some that once lost headings or code), so a failure names a
page that anyone can open.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from aiohttp import web

from shared.egress import EgressPolicy
from shared.models import Agent, Job
from shared.settings import Settings
from tests.helpers import serve_aiohttp
from worker.engines.base import EngineContext
from worker.engines.fetch import run_fetch
from worker.http_client import create_session

DOC = Path("/usr/share/doc")
MANUALS = {
    "postgresql": sorted(DOC.glob("postgresql-doc-*/html")),
    "django": [DOC / "python-django-doc" / "html"],
}
PER_MANUAL = 16
KNOWN_HARD = {
    "postgresql": ["sql-notify.html", "performance-tips.html", "tablefunc.html", "app-psql.html"],
    "django": [
        "releases/1.9.html",
        "ref/checks.html",
        "ref/databases.html",
        "intro/tutorial01.html",
    ],
}
_WORD = re.compile(r"\w+")
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"))
# Indexes and tables of contents are lists of links with no text of their own to keep.
_SKIP = re.compile(r"(^|/)(genindex|search|py-modindex|bookindex|contents|index)\.html$|(^|/)_")


def _root(manual: str) -> Path:
    roots = [root for root in MANUALS[manual] if (root / "index.html").exists()]
    if not roots:
        pytest.skip(f"Debian's {manual} manual is not installed: run `make debian-docs`")
    return roots[-1]


def _sample(manual: str) -> list[str]:
    root = _root(manual)
    pages = sorted(str(p.relative_to(root)) for p in root.rglob("*.html"))
    pages = [page for page in pages if not _SKIP.search(page)]
    step = max(1, len(pages) // PER_MANUAL)
    return sorted({*pages[::step][:PER_MANUAL], *KNOWN_HARD[manual]})


@pytest.fixture(scope="module")
async def docs_url() -> AsyncIterator[str]:
    app = web.Application()
    for manual in MANUALS:
        app.router.add_static(f"/{manual}/", _root(manual))
    async with serve_aiohttp(app) as url:
        yield url


@contextlib.asynccontextmanager
async def engine(settings: Settings) -> AsyncIterator[EngineContext]:
    policy = EgressPolicy(settings.egress_allow_cidrs, ["1-65535"])
    session = create_session(policy)
    job = Job(kind="fetch", input={}, timeout_s=30.0, max_attempts=1, attempts=1)
    agent = Agent(name="docs", headers={}, allowed_domains=[], blocked_domains=[])
    try:
        yield EngineContext(
            job=job, agent=agent, secrets={}, settings=settings, policy=policy, http=session
        )
    finally:
        await session.close()


def words(text: str) -> tuple[str, ...]:
    """The words a person reads: Markdown's backslash escapes and invisible characters (a
    zero-width space inside a long identifier) taken out."""
    return tuple(_WORD.findall(re.sub(r"\\(.)", r"\1", text).translate(_INVISIBLE)))


def main_content(manual: str, tree: lxml.html.HtmlElement) -> list[lxml.html.HtmlElement]:
    """The page's own content, as its generator marks it (navigation and sidebars left out)."""
    if manual == "django":
        return tree.xpath("//div[@id='yui-main']")  # type: ignore[no-any-return]
    furniture = {"navheader", "navfooter"}
    return [child for child in tree.body if (child.get("class") or "") not in furniture]


def has_text(manual: str, html: str) -> bool:
    """Whether the page has paragraphs of its own, besides its table of contents."""
    tree = lxml.html.document_fromstring(re.sub(r"^\s*<\?xml[^>]*\?>", "", html))
    return any(
        p.text_content().strip() and next(p.iterancestors("ul", "dl", "table"), None) is None
        for root in main_content(manual, tree)
        for p in root.iter("p")
        if "toc" not in (p.getparent().get("class") or "")
    )


def headings(root: lxml.html.HtmlElement) -> list[lxml.html.HtmlElement]:
    return root.xpath(".//h1|.//h2|.//h3|.//h4|.//h5|.//h6")  # type: ignore[no-any-return]


def section_start(heading: lxml.html.HtmlElement) -> tuple[str, ...]:
    """The first words under a heading (its next sibling with text)."""
    for sibling in heading.itersiblings():
        found = words(sibling.text_content())
        if found:
            return found[:8]
    return ()


def shown(pre: lxml.html.HtmlElement) -> str:
    text: str = pre.text_content()
    return (text[1:] if text.startswith("\n") else text).rstrip()


def problems(manual: str, html: str, markdown: str) -> list[str]:
    tree = lxml.html.document_fromstring(re.sub(r"^\s*<\?xml[^>]*\?>", "", html))
    lines = {words(line) for line in markdown.splitlines() if line.startswith("#")}
    text = " ".join(words(markdown))
    found: list[str] = []
    roots = main_content(manual, tree)
    titles = [h for root in roots for h in headings(root)][:1]
    for root in roots:
        for heading in headings(root):
            start = section_start(heading)  # a few words could be anywhere: not a proof
            kept = len(start) >= 4 and " ".join(start) in text  # its section is in the Markdown
            if (kept or heading in titles) and words(heading.text_content()) not in lines:
                found.append(f"heading {heading.text_content().strip()!r} missing")
        found += stray_code(markdown)
        paragraphs = list(root.iter("p"))
        for pre in root.iter("pre"):
            if next(pre.iterancestors("table"), None) is not None or shown(pre) in markdown:
                continue  # a table cell holds one line in Markdown
            if all(" ".join(words(p.text_content())[:8]) in text for p in around(pre, paragraphs)):
                found.append(f"code block {shown(pre)[:40]!r} not as shown")
    return found


def stray_code(markdown: str) -> list[str]:
    """Text that Markdown would show as code without the page meaning it: outside fences, a
    line indented four spaces after a blank line (DocBook's source indentation, copied)."""
    found, fence, previous = [], False, ""
    for line in markdown.splitlines():
        if re.match(r"^\s*(?:[-*+]\s+|\d+[.)]\s+)?```", line) or line.rstrip().endswith("```"):
            fence = not fence  # the second: trafilatura's inline code that holds a newline
        elif (
            not fence
            and line.startswith("    ")
            and line.strip()
            and not previous.strip()
            and not re.match(r"^\s*(?:[-*+]|\d+[.)])\s", line)
        ):
            found.append(f"stray indented line {line.strip()[:40]!r}")
        previous = line
    return found


def around(
    pre: lxml.html.HtmlElement, paragraphs: list[lxml.html.HtmlElement]
) -> list[lxml.html.HtmlElement]:
    """The paragraphs just before and after a code block: when both are in the Markdown, the
    code between them must be too."""
    order = {element: number for number, element in enumerate(pre.getroottree().iter())}
    before = [p for p in paragraphs if order[p] < order[pre]][-1:]
    after = [p for p in paragraphs if order[p] > order[pre]][:1]
    return before + after if before and after else []


@pytest.mark.parametrize("manual", list(MANUALS))
async def test_real_manuals_keep_their_headings_and_code(
    manual: str, docs_url: str, settings: Settings
) -> None:
    failures: dict[str, list[str]] = {}
    checked = 0
    async with engine(settings) as ctx:
        for page in _sample(manual):
            ctx.job.input = {"url": f"{docs_url}/{manual}/{page}", "formats": ["markdown"]}
            result: dict[str, Any] = await run_fetch(ctx)
            html = (_root(manual) / page).read_text(encoding="utf-8")
            if not has_text(manual, html):
                continue  # a chapter's table of contents: no main content to keep
            if found := problems(manual, html, result["markdown"]):
                failures[page] = found
            checked += 1
    assert checked >= PER_MANUAL
    assert failures == {}


async def test_sphinx_code_blocks_keep_their_language(docs_url: str, settings: Settings) -> None:
    async with engine(settings) as ctx:
        ctx.job.input = {"url": f"{docs_url}/django/intro/tutorial01.html"}
        markdown = (await run_fetch(ctx))["markdown"]
    tree = lxml.html.parse(str(_root("django") / "intro/tutorial01.html")).getroot()
    blocks = tree.xpath("//div[@id='yui-main']//div[starts-with(@class, 'highlight-')]")
    assert len(blocks) > 5
    for block in blocks:
        language = block.get("class").split()[0].removeprefix("highlight-")
        fence = "```" if language in ("default", "none", "text") else f"```{language}"
        assert f"{fence}\n{shown(block.xpath('.//pre')[0])}\n```" in markdown

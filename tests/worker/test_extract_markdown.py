"""Markdown that keeps what a person sees: headings in every position, code as shown, links.

Pages here are built like real ones (a cookie banner, navigation, a footer around the content)
and each assertion is on the exact Markdown a user gets back.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.conftest import RunWorker
from tests.helpers import serve_aiohttp, wait_for_job
from tests.worker.support import submit
from tests.worker.test_browser_site import browser_worker, render_job
from worker.extract.document import build_result

URL = "https://news.example/2024/05/story"


def para(sentence: str) -> str:
    return "<p>" + " ".join([sentence] * 5) + "</p>"


def page(main: str, head: str = "") -> str:
    return f"""<!doctype html><html lang="en"><head><title>Page</title>{head}</head><body>
<div id="cookie-banner" class="cookie-consent"><p>We use cookies to improve your experience.
Accept all cookies?</p><button>Accept</button></div>
<nav class="site-nav"><h2>Menu</h2><ul><li><a href="/">Home</a></li><li><a href="/news">News</a>
</li><li><a href="/about">About us</a></li></ul></nav>
{main}
<footer class="site-footer"><h2>Contact the newsroom</h2><p>Copyright 2024 Example Media Ltd.
All rights reserved. Registered in England and Wales.</p></footer></body></html>"""


def build(html: str, formats: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
    return build_result(
        html,
        url=kwargs.pop("url", URL),
        formats=formats or ["markdown", "text"],
        extract=None,
        metadata={"content_type": "text/html"},
        **kwargs,
    )


def headings(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("#")]


SPRING = para("The spring update brings faster sync and a new export format for teams.")
SYNC = para("Sync now batches writes and retries on flaky networks without any user action.")
EXPORT = para("Exports can now be scheduled weekly and delivered to a shared team folder.")
LIBRARY = para("The new library on Mill Street opened its doors to the public on Saturday.")
ROOMS = para("The architects designed reading rooms that open onto a garden courtyard.")
QUIET = para("The top floor is kept silent for study and has forty desks with green lamps.")

HEADING_PAGES = {
    "an app's div root, h1 above the first paragraph": (
        f"<div id='root'><h1>Release notes for the spring update</h1>{SPRING}"
        f"<h2>What changed in sync</h2>{SYNC}<h2>Export</h2>{EXPORT}</div>",
        ["# Release notes for the spring update", "## What changed in sync", "## Export"],
    ),
    "an article's header, with a byline": (
        "<main><article><header><h1>City opens a new library</h1><p class='byline'>By Ann "
        f"Lee, 3 May 2024</p></header>{LIBRARY}<section><h2>A building for everyone</h2>"
        f"{ROOMS}<h3>Quiet floors</h3>{QUIET}</section></article></main>",
        ["# City opens a new library", "## A building for everyone", "### Quiet floors"],
    ),
    "hgroup, and every level down to h6": (
        f"<article><hgroup><h1>Field notes</h1><p>From the coast</p></hgroup>{SPRING}"
        f"<h4>Methods</h4>{SYNC}<h5>Caveats</h5><h6>Weather</h6>{EXPORT}</article>",
        ["# Field notes", "#### Methods", "##### Caveats", "###### Weather"],
    ),
    "sections in plain divs, with inline markup in a heading": (
        f"<div class='page'><div class='content'><h2>Getting <em>started</em> "
        f"with <code>sync</code></h2>{SYNC}<div class='section'><h3>Step 1: install</h3>"
        f"{EXPORT}</div></div></div>",
        ["## Getting *started* with `sync`", "### Step 1: install"],
    ),
}


@pytest.mark.parametrize("name", list(HEADING_PAGES))
def test_every_heading_of_the_main_content_is_in_the_markdown(name: str) -> None:
    main, expected = HEADING_PAGES[name]
    result = build(page(main))
    assert headings(result["markdown"]) == expected
    text_lines = result["text"].splitlines()
    for heading in expected:  # the text format has the same content, as plain lines
        plain = heading.lstrip("# ").replace("*", "").replace("`", "")
        assert plain in text_lines
    for furniture in ("Menu", "Contact the newsroom", "We use cookies", "Accept"):
        assert furniture not in result["markdown"]
    for sentence in re.findall(r"<p>([^<]+?\.) ", main):  # each paragraph once, in both
        assert result["markdown"].count(sentence) == result["text"].count(sentence) == 5


def test_headings_come_back_in_their_place() -> None:
    main = HEADING_PAGES["an app's div root, h1 above the first paragraph"][0]
    markdown = build(page(main))["markdown"]
    first, second, third = (markdown.index(h) for h in ("# Release", "## What", "## Export"))
    spring, sync, export = (markdown.index(w) for w in ("The spring", "Sync now", "Exports can"))
    assert first < spring < second < sync < third < export
    assert markdown.startswith("# Release notes for the spring update\n\nThe spring update")
    assert "\n\n## What changed in sync\n\nSync now batches" in markdown


def test_text_right_after_a_heading_comes_once_and_after_it() -> None:
    loose = "Text right after the heading sits in the div itself, as old pages do."
    main = f"<article><h1>Loose text</h1>{SPRING}<div><h2>Sync</h2>{loose}</div>{SYNC}</article>"
    result = build(page(main))
    assert result["markdown"].count(loose) == result["text"].count(loose) == 1
    assert f"## Sync\n\n{loose}" in result["markdown"]
    assert f"\nSync\n{loose}" in result["text"]


def test_headings_of_dropped_boxes_stay_dropped() -> None:
    main = (
        f"<div id='app'><h1>Top heading in a div root</h1>{SPRING}<h2>Second level</h2>{SYNC}"
        "<aside><h3>Aside heading</h3><p>Side note.</p></aside>"
        "<div class='related-stories'><h3>More from us</h3><ul><li><a href='/a'>One story "
        "about sync</a></li><li><a href='/b'>Another story about export</a></li></ul></div>"
        "<ul class='teasers'><li><a href='/c'><h4>A teaser headline that leads away</h4></a>"
        f"</li></ul>{EXPORT}</div>"
    )
    markdown = build(page(main))["markdown"]
    assert headings(markdown) == ["# Top heading in a div root", "## Second level"]
    assert "Exports can now be scheduled" in markdown


def test_the_wild_webs_headings_page() -> None:
    # /headings of the wild-web tool: trafilatura alone returned none of these headings.
    html = (
        "<html><head><title>Headings</title></head><body><div id='app'><h1>Top heading in a "
        "div root</h1><p>" + "First paragraph under the top heading. " * 10 + "</p><h2>Second"
        " level</h2><p>" + "More text. " * 20 + "</p><aside><h3>Aside heading</h3><p>Side "
        "note.</p></aside><h2>Code</h2><pre><code class='language-python'>def f():\n\n    "
        "return 1\n</code></pre></div></body></html>"
    )
    markdown = build(html)["markdown"]
    assert headings(markdown) == ["# Top heading in a div root", "## Second level", "## Code"]
    assert markdown.endswith("## Code\n\n```python\ndef f():\n\n    return 1\n```")


CODE = "def handler(event):\n\n    if event:\n\treturn 1\n\n\n    return 0  # done"
LANGUAGE_FORMS = {
    "language-x on the code": ("<pre><code class='language-python'>{}</code></pre>", "python"),
    "lang-x on the pre": ("<pre class='prettyprint lang-js'>{}</pre>", "js"),
    "highlight-x on a wrapping div (Sphinx)": (
        "<div class='highlight-sql notranslate'><div class='highlight'><pre>{}</pre></div></div>",
        "sql",
    ),
    "highlight-source-x (GitHub)": (
        "<div class='highlight highlight-source-rust'><pre>{}</pre></div>",
        "rust",
    ),
    "highlight-x on the pre": ("<pre class='highlight-c++'>{}</pre>", "c++"),
    "no language, and Sphinx's highlight-default": (
        "<div class='highlight-default'><div class='highlight'><pre>{}</pre></div></div>",
        "",
    ),
    "a leading newline and highlight spans": (
        "<pre class='language-ruby'>\n{}</pre>",
        "ruby",
    ),
}


@pytest.mark.parametrize("name", list(LANGUAGE_FORMS))
def test_code_blocks_keep_language_blank_lines_and_indentation(name: str) -> None:
    template, language = LANGUAGE_FORMS[name]
    shown = CODE
    if "spans" in name:  # a highlighter's markup around tokens is not content
        shown = CODE.replace("def", "<span class='k'>def</span>").replace(
            "return", "<span class='k'>return</span>"
        )
    main = f"<article><h1>Handlers</h1>{SPRING}{template.format(shown)}{SYNC}</article>"
    result = build(page(main))
    assert f"\n\n```{language}\n{CODE}\n```\n\nSync now batches" in result["markdown"]
    assert f"\n{CODE}\n" in result["text"]


def test_code_that_trafilatura_took_for_a_quote_or_a_paragraph() -> None:
    # A <pre> without code-like characters became a quote, its blank lines and indentation
    # gone; `<br>` inside a <pre> is a line break.
    synopsis = "NOTIFY channel [ , payload ]\n\n  LISTEN channel"
    main = (
        f"<div class='refentry'><h2>NOTIFY</h2><p>NOTIFY — generate a notification</p>"
        f"<h2>Synopsis</h2><pre class='synopsis'>{synopsis}</pre>{SYNC}"
        f"<pre>first line<br>  second line</pre>{EXPORT}</div>"
    )
    markdown = build(page(main))["markdown"]
    assert f"## Synopsis\n\n```\n{synopsis}\n```" in markdown
    assert "```\nfirst line\n  second line\n```" in markdown
    assert headings(markdown) == ["## NOTIFY", "## Synopsis"]


def test_code_with_backticks_and_code_in_a_list_item() -> None:
    fenced = "Use ```python fences``` in docs\n\n    indented"
    main = (
        f"<article><h1>Writing docs</h1>{SPRING}<pre><code>{fenced}</code></pre>{SYNC}"
        "<ol><li>Install the tool with this command, then check its version:"
        "<pre class='language-sh'>pip install tool\n\ntool --version</pre></li>"
        f"<li>Run it on your files.</li></ol>{EXPORT}</article>"
    )
    markdown = build(page(main))["markdown"]
    assert f"````\n{fenced}\n````" in markdown  # a longer fence than any run inside
    item = "1. Install the tool with this command, then check its version:\n\n"
    assert item + "   ```sh\n   pip install tool\n\n   tool --version\n   ```" in markdown


def test_content_that_starts_with_indented_code() -> None:
    code = "    indented first\n\n  x = 1"
    result = build(f"<html><body><article><pre>{code}</pre>{SYNC}</article></body></html>")
    assert result["markdown"].startswith(f"```\n{code}\n```\n\nSync now batches")
    assert result["text"].startswith(f"{code}\nSync now batches")


def test_markdown_links_keeps_targets_absolute_and_only_when_asked() -> None:
    main = (
        "<article><h1>Guide</h1><p>Read the <a href='intro.html'>introduction</a>, then <a "
        "href='../v1/old.html#x'>the old one</a>, <a href='https://other.example/a?b=1&amp;c=2'"
        ">a page elsewhere</a>, <a href='javascript:alert(1)'>a script</a> and <a href='mailto:"
        f"desk@news.example'>mail us</a>. {'More words for a paragraph of decent length. ' * 6}"
        f"</p>{SYNC}</article>"
    )
    html = page(main, head="<base href='/docs/v2/'>")
    plain = build(html, formats=["markdown", "text", "html"])
    linked = build(html, formats=["markdown", "text", "html"], markdown_links=True)
    assert "](" not in plain["markdown"]
    assert plain["markdown"].startswith("# Guide\n\nRead the introduction, then the old one, a")
    assert linked["markdown"].startswith(
        "# Guide\n\nRead the [introduction](https://news.example/docs/v2/intro.html), then "
        "[the old one](https://news.example/docs/v1/old.html#x), [a page elsewhere]"
        "(https://other.example/a?b=1&c=2), a script and [mail us](mailto:desk@news.example)."
    )
    assert _lines(linked["text"]) == _lines(plain["text"])  # plain text has no link syntax
    assert linked["html"] == plain["html"]  # the page's own hrefs are as written
    assert 'href="intro.html"' in linked["html"]


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def test_hostile_markup_and_placeholder_lookalikes() -> None:
    nested = "<div>" * 200 + SPRING + "</div>" * 200
    lookalike = para("outriderpiece0000x0x is a word on this page and must stay a word.")
    main = f"<main><h1>Deep</h1>{nested}{lookalike}<pre>x = '```'\n\n\ty</pre>{SYNC}</main>"
    result = build(page(main))
    assert headings(result["markdown"]) == ["# Deep"]
    assert "outriderpiece0000x0x is a word" in result["markdown"]
    assert "````\nx = '```'\n\n\ty\n````" in result["markdown"]
    parts = (f"<h2>Part {n}</h2>{para(f'Paragraph {n} of a long page.')}" for n in range(300))
    long_page = build(page(f"<article><h1>Long</h1>{''.join(parts)}</article>"))["markdown"]
    assert headings(long_page) == ["# Long", *(f"## Part {n}" for n in range(300))]


# A render: the heading an action produced


async def _spa(request: web.Request) -> web.Response:
    script = (
        "document.getElementById('go').onclick = () => { const root = document.getElementById"
        "('root'); root.innerHTML = '<h1>Results for outrider</h1>' + '<p>' + 'Outrider found"
        " twelve pages about agents and their web work in the archive. '.repeat(6) + '</p>'"
        " + '<h2>Older results</h2><p>' + 'Three more pages came from the year before. '"
        ".repeat(6) + '</p>'; };"
    )
    body = f"<div id='root'><button id='go'>search</button></div><script>{script}</script>"
    return web.Response(
        text=f"<html><head><title>app</title></head><body>{body}</body></html>",
        content_type="text/html",
    )


@pytest.fixture
async def spa_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/app", _spa)
    async with serve_aiohttp(app) as url:
        yield f"{url}/app"


async def test_a_render_keeps_the_heading_its_actions_produced(
    client: httpx.AsyncClient, auth: dict[str, str], spa_url: str, run_worker: RunWorker
) -> None:
    spec = render_job(spa_url, formats=["markdown"], actions=[{"type": "click", "selector": "#go"}])
    async with browser_worker(run_worker):
        job = await wait_for_job(client, auth, await submit(client, auth, spec), timeout_s=30)
    assert job["status"] == "succeeded", job
    markdown = job["result"]["markdown"]
    assert headings(markdown) == ["# Results for outrider", "## Older results"]
    assert re.match(r"# Results for outrider\n\nOutrider found twelve pages", markdown)

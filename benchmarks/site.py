"""A generated, deterministic web site for the benchmarks: article pages of about 30 KB, and
pages whose content only JavaScript creates.

A page `n` is the same bytes in every run: its words come from `random.Random(n)`. Each article
has what a real one has around its text: a navigation bar, a sidebar, a cookie banner and a
footer (boilerplate that main-content extraction drops), headings, paragraphs with inline
links, a list, a table and a code block; about 60 links, internal (`/site/m`) and external.
"""

from __future__ import annotations

import html
import json
import random
from functools import lru_cache

_LEXICON = (
    "agent queue worker page browser render fetch extract markdown link table request "
    "response latency throughput memory process socket thread event loop parser document "
    "content header footer sidebar article section paragraph retry backoff lease fence "
    "schedule cron artifact screenshot proxy policy egress host robots crawl delay index "
    "search engine result status timeout budget channel buffer stream batch commit"
)
WORDS = _LEXICON.split()
ROBOTS_TXT = "User-agent: *\nAllow: /\n"
ARTICLE_BYTES = 30_000


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def _paragraph(rng: random.Random, pages: int) -> str:
    parts = [_sentence(rng, rng.randint(8, 18)) for _ in range(rng.randint(3, 6))]
    target = rng.randrange(pages)
    parts.insert(1, f'See <a href="/site/{target}">{html.escape(rng.choice(WORDS))} notes</a>.')
    return f"<p>{' '.join(parts)}</p>"


def _chrome(rng: random.Random, n: int, pages: int) -> tuple[str, str]:
    nav = "".join(f'<li><a href="/site/{(n + i) % pages}">Section {i}</a></li>' for i in range(20))
    side = "".join(
        f'<li><a href="/site/{rng.randrange(pages)}#top">Related {i}</a></li>' for i in range(15)
    )
    external = "".join(f'<a href="https://example.org/{w}">{w}</a> ' for w in rng.sample(WORDS, 10))
    head = (
        '<div class="cookie-banner">We use cookies. <button>Accept</button></div>'
        f'<header><nav><ul class="menu">{nav}</ul></nav></header>'
        f'<aside class="sidebar"><h3>Related</h3><ul>{side}</ul></aside>'
    )
    foot = (
        f'<footer><p>Elsewhere: {external}</p><p><a href="mailto:bench@example.org">mail</a> '
        f'<a href="javascript:void(0)">top</a> Copyright bench site.</p></footer>'
    )
    return head, foot


def _body(rng: random.Random, n: int, pages: int) -> str:
    parts = [f"<h1>Benchmark article {n}</h1>"]
    section = 0
    while sum(map(len, parts)) < ARTICLE_BYTES - 3_500:
        section += 1
        parts.append(f"<h2>Part {section}: {html.escape(_sentence(rng, 4))}</h2>")
        parts.extend(_paragraph(rng, pages) for _ in range(3))
        if section % 3 == 1:
            items = "".join(f"<li>{_sentence(rng, 6)}</li>" for _ in range(5))
            parts.append(f"<ul>{items}</ul>")
        if section % 3 == 2:
            rows = "".join(
                f"<tr><td>{rng.choice(WORDS)}</td><td>{rng.randint(1, 999)}</td></tr>"
                for _ in range(6)
            )
            parts.append(f"<table><tr><th>name</th><th>value</th></tr>{rows}</table>")
        if section % 3 == 0:
            parts.append(f"<pre><code>queue.put({rng.randint(1, 99)})\n</code></pre>")
    return "".join(parts)


@lru_cache(maxsize=1024)
def article(n: int, pages: int = 500) -> bytes:
    """Article page `n` of a `pages`-page site: about 30 KB of HTML."""
    rng = random.Random(n)
    head, foot = _chrome(rng, n, pages)
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Benchmark article {n}</title>"
        f'<meta name="description" content="Article {n} of the benchmark site">'
        f"<style>body {{ font-family: sans-serif; }} .menu li {{ display: inline; }}</style>"
        f"</head><body>{head}<main><article>{_body(rng, n, pages)}</article></main>{foot}"
        f"</body></html>"
    )
    return page.encode()


@lru_cache(maxsize=1024)
def js_page(n: int, pages: int = 100) -> bytes:
    """A page whose article is built by a script from embedded data: without JavaScript it
    is an empty `#root`."""
    rng = random.Random(100_000 + n)
    sections = [
        {
            "title": _sentence(rng, 4),
            "paragraphs": [_sentence(rng, 40) for _ in range(3)],
            "link": rng.randrange(pages),
        }
        for _ in range(8)
    ]
    data = json.dumps({"title": f"Rendered article {n}", "sections": sections})
    data = data.replace("</", "<\\/")  # nothing in the data may close the script element
    script = (
        "const d = JSON.parse(document.getElementById('data').textContent);"
        "const root = document.getElementById('root');"
        "const art = document.createElement('article');"
        "const h1 = document.createElement('h1'); h1.textContent = d.title; art.append(h1);"
        "for (const s of d.sections) {"
        " const h = document.createElement('h2'); h.textContent = s.title; art.append(h);"
        " for (const t of s.paragraphs) {"
        "  const p = document.createElement('p'); p.textContent = t; art.append(p); }"
        " const a = document.createElement('a'); a.href = '/js/' + s.link;"
        " a.textContent = 'next: ' + s.title; art.append(a); }"
        "root.append(art);"
    )
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Rendered article {n}</title></head><body>"
        f'<div id="root"></div>'
        f'<script type="application/json" id="data">{data}</script>'
        f"<script>{script}</script></body></html>"
    )
    return page.encode()

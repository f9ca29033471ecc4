"""The benchmark harness's pure helpers: the generated site, the soak's mix, the sizes flags.
(No timing here: the numbers live in benchmarks/.)"""

from __future__ import annotations

import sys
from collections import Counter

import lxml.html
import pytest

from benchmarks import run
from benchmarks.common import QUICK, Sizes
from benchmarks.scenarios_soak import mixed_specs
from benchmarks.site import article, js_page
from worker.extract.document import build_result


def test_article_is_deterministic_and_about_30_kb() -> None:
    sizes = [len(article(n)) for n in range(0, 500, 25)]
    assert all(28_000 <= size <= 33_000 for size in sizes), sizes
    assert article(7) == article.__wrapped__(7, 500)  # the same bytes without the cache
    assert article(7) != article(8)


def test_article_has_content_links_and_boilerplate() -> None:
    page = article(3).decode()
    result = build_result(
        page,
        url="http://127.0.0.1:1/site/3",
        formats=["markdown", "links"],
        extract=None,
        metadata={"content_type": "text/html"},
    )
    assert result["markdown"].startswith("# Benchmark article 3")
    assert "We use cookies" not in result["markdown"]  # the banner is not main content
    assert len(result["links"]["internal"]) > 20
    external = [link["url"] for link in result["links"]["external"]]
    assert len(external) == 10
    assert all(u.startswith("https://example.org/") for u in external)


def test_js_page_content_exists_only_after_scripts_run() -> None:
    tree = lxml.html.document_fromstring(js_page(4))
    root = tree.find(".//div[@id='root']")
    assert root is not None
    assert len(root) == 0
    assert not (root.text or "").strip()
    data = tree.find(".//script[@id='data']")
    assert data is not None
    assert "Rendered article 4" in (data.text or "")


def test_soak_mix_is_mostly_http_and_fetch_with_a_few_browser_jobs() -> None:
    kinds = Counter(spec["kind"] for spec in mixed_specs("http://t", 1000))
    assert kinds == {"http": 700, "fetch": 270, "render": 20, "scrape": 10}


def test_quick_sizes_with_a_flag_overriding_one(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["run", "--quick", "--soak-jobs", "2500", "--scenario", "soak"]
    monkeypatch.setattr(sys, "argv", argv)
    parsed: dict[str, object] = {}
    monkeypatch.setattr(run, "_run_all", lambda names, rounds, sizes: parsed.update(sizes=sizes))
    run.main()
    assert parsed["sizes"] == Sizes(**{**QUICK.__dict__, "soak_jobs": 2500})

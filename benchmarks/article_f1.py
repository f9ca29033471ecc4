"""Main-content quality on the public ScrapingHub article-extraction benchmark (4-gram F1).

The dataset is not shipped here: check out github:scrapinghub/article-extraction-benchmark
(181 gzipped pages in `html/`, `ground-truth.json`) and pass its path:

    python -m benchmarks.article_f1 /path/to/article-extraction-benchmark

The metric is the dataset's own `evaluate.py`: `\\w+` tokens, 4-token shingles, per page a
true/false positive/negative count normalised to sum to 1, precision and recall averaged over
pages, F1 of the two averages; ± is a bootstrap standard deviation over pages. Rows:

- `trafilatura.extract`: the dataset's own trafilatura runner (plain text, no comments), the
  reference figure (about 0.95).
- `before`: Outrider's trafilatura call, its main content as trafilatura leaves it (plain text),
  without the fidelity pass of worker/extract/fidelity.py.
- `after text` / `after markdown` / `after markdown_links`: what a `fetch` job returns.
- `after text, no <h1>`: `after text` less the page's `<h1>` lines that the fidelity pass put
  back: the ground truth is schema.org's `articleBody`, which leaves the headline out, so this
  row compares the body with the body.

Markdown syntax (`#`, `*`, backticks) is no `\\w` token, so it costs nothing; link targets in
`markdown_links` mode are words the ground truth lacks, so that row's precision is lower.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trafilatura

from worker.extract import clean
from worker.extract.blocks import heading_text
from worker.extract.content import extract_main
from worker.extract.document import build_result

_TOKEN = re.compile(r"\w+", re.UNICODE)
Counts = tuple[float, float, float]


def shingle_counts(truth: str, predicted: str, n: int = 4) -> Counts:
    """(tp, fp, fn) over n-token shingles, normalised to sum to 1 (as evaluate.py does)."""

    def shingles(text: str) -> Counter[tuple[str, ...]]:
        tokens = _TOKEN.findall(text or "")
        return Counter(tuple(tokens[i : i + n]) for i in range(max(1, len(tokens) - n + 1)))

    want, got = shingles(truth), shingles(predicted)
    want.pop((), None)
    got.pop((), None)
    tp = float(sum((want & got).values()))
    fp = float(sum((got - want).values()))
    fn = float(sum((want - got).values()))
    total = tp + fp + fn
    return (tp / total, fp / total, fn / total) if total else (0.0, 0.0, 0.0)


def _precision(tp: float, fp: float, fn: float) -> float:
    if fp == fn == 0:
        return 1.0
    return 0.0 if tp == fp == 0 else tp / (tp + fp)


def _recall(tp: float, fp: float, fn: float) -> float:
    if fp == fn == 0:
        return 1.0
    return 0.0 if tp == fn == 0 else tp / (tp + fn)


def scores(counts: list[Counts]) -> dict[str, float]:
    """Mean precision and recall over pages, and the F1 of the two means."""
    precision = statistics.mean(_precision(*c) for c in counts if c[0] + c[1] > 0)
    recall = statistics.mean(_recall(*c) for c in counts if c[0] + c[2] > 0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": f1, "precision": precision, "recall": recall}


def bootstrap_std(counts: list[Counts], rounds: int, seed: int = 0) -> dict[str, float]:
    """Standard deviation of each score over pages resampled with replacement."""
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {}
    for _ in range(rounds):
        picked = [counts[rng.randrange(len(counts))] for _ in counts]
        for name, value in scores(picked).items():
            samples.setdefault(name, []).append(value)
    return {name: statistics.stdev(values) for name, values in samples.items() if len(values) > 1}


def load(dataset: Path, limit: int | None) -> list[tuple[str, str, str]]:
    """(url, html, true article body) of every page of the dataset, in a stable order."""
    truth = json.loads((dataset / "ground-truth.json").read_text(encoding="utf-8"))
    pages = []
    for key in sorted(truth)[:limit]:
        with gzip.open(dataset / "html" / f"{key}.html.gz", "rt", encoding="utf-8") as file:
            pages.append((truth[key].get("url") or "", file.read(), truth[key]["articleBody"]))
    return pages


def _outrider(fmt: str, markdown_links: bool = False) -> Callable[[str, str], str]:
    def run(html: str, url: str) -> str:
        result = build_result(
            html,
            url=url,
            formats=[fmt],
            extract=None,
            metadata={"content_type": "text/html"},
            markdown_links=markdown_links,
        )
        return str(result.get(fmt) or "")

    return run


def _before(html: str, url: str) -> str:
    tree = clean.parse(html)
    found = extract_main(tree, url, fidelity=False) if tree is not None else None
    return found.text if found is not None else ""


def _body_only(html: str, url: str) -> str:
    """`after text` less the page `<h1>`s the fidelity pass added: the headline, which the
    ground truth (schema.org `articleBody`) leaves out by definition."""
    tree = clean.parse(html)
    if tree is None:
        return ""
    before, after = extract_main(tree, url, fidelity=False), extract_main(tree, url)
    kept = set(before.text.split("\n")) if before is not None else set()
    headlines = {heading_text(h1) for h1 in tree.iter("h1")} - kept
    lines = after.text.split("\n") if after is not None else []
    return "\n".join(line for line in lines if line not in headlines)


def _reference(html: str, url: str) -> str:
    return trafilatura.extract(html, include_comments=False) or ""


EXTRACTORS: dict[str, Callable[[str, str], str]] = {
    "trafilatura.extract": _reference,
    "before": _before,
    "after text": _outrider("text"),
    "after text, no <h1>": _body_only,
    "after markdown": _outrider("markdown"),
    "after markdown_links": _outrider("markdown", markdown_links=True),
}


def evaluate(pages: list[tuple[str, str, str]], rounds: int) -> dict[str, dict[str, Any]]:
    """Scores, bootstrap deviations and mean milliseconds per page of every extractor."""
    report: dict[str, dict[str, Any]] = {}
    for name, extractor in EXTRACTORS.items():
        counts, started = [], time.process_time()
        for url, html, truth in pages:
            counts.append(shingle_counts(truth, extractor(html, url)))
        ms = (time.process_time() - started) * 1000 / len(pages)
        report[name] = {**scores(counts), "std": bootstrap_std(counts, rounds), "ms_per_page": ms}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", type=Path, help="a checkout of article-extraction-benchmark")
    parser.add_argument("--limit", type=int, default=None, help="only the first N pages")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap rounds")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    pages = load(args.dataset, args.limit)
    report = evaluate(pages, args.bootstrap)
    if args.json:
        print(json.dumps({"pages": len(pages), "extractors": report}, indent=2))
        return
    print(f"{len(pages)} pages")
    print(f"{'':<22} {'F1':<14} {'precision':<14} {'recall':<14} ms/page")
    for name, row in report.items():
        cells = [
            f"{row[k]:.3f} ± {row['std'].get(k, 0.0):.3f}" for k in ("f1", "precision", "recall")
        ]
        print(f"{name:<22} {cells[0]:<14} {cells[1]:<14} {cells[2]:<14} {row['ms_per_page']:.1f}")


if __name__ == "__main__":
    main()

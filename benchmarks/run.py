"""`make bench`: run the scenarios, print a table (median, min, max, ratio), write JSON.

python -m benchmarks.run                       # every scenario, full sizes
python -m benchmarks.run --scenario fetch --rounds 5
python -m benchmarks.run --quick               # small sizes, for development
python -m benchmarks.run --scenario soak --soak-jobs 2000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
import traceback
from typing import Any

import psutil

from benchmarks.common import QUICK, ROOT, Sizes
from benchmarks.scenarios import SCENARIOS

RESULTS = ROOT / "benchmarks" / "results"
SIZE_FLAGS = {
    "--e2e-jobs": "e2e_jobs",
    "--concurrency-jobs": "concurrency_jobs",
    "--site-pages": "site_pages",
    "--render-pages": "render_pages",
    "--soak-jobs": "soak_jobs",
    "--submit-seconds": "submit_seconds",
    "--crawl-rss-pages": "crawl_rss_pages",
    "--ledger-rows": "ledger_rows",
    "--fleet-jobs": "fleet_jobs",
}


def _machine() -> dict[str, Any]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def _print(name: str, result: dict[str, Any]) -> None:
    verdict = "PASS" if result["pass"] else "MISS"
    ratio = f"{result['ratio']:.2f}" if result["ratio"] is not None else "-"
    print(f"\n{name}  [{verdict}]  target: {result['target']}  ratio: {ratio}  {result['notes']}")
    print(f"  {'figure':<22}{'median':>12}{'min':>12}{'max':>12}  unit")
    for stat in result["stats"]:
        d = stat.as_dict()
        figures = f"{d['median']:>12.1f}{d['min']:>12.1f}{d['max']:>12.1f}"
        print(f"  {d['name']:<22}{figures}  {d['unit']}")


def _sizes(args: argparse.Namespace) -> Sizes:
    sizes = QUICK if args.quick else Sizes()
    chosen = {field: getattr(args, field) for field in SIZE_FLAGS.values()}
    return dataclasses.replace(sizes, **{k: v for k, v in chosen.items() if v is not None})


def _run_all(names: list[str], rounds: int, sizes: Sizes) -> None:
    report: dict[str, Any] = {
        "machine": _machine(),
        "started": time.time(),
        "rounds": rounds,
        "sizes": dataclasses.asdict(sizes),
        "scenarios": {},
    }
    failed = []
    for name in names:
        try:
            result = SCENARIOS[name](rounds, sizes)
        except Exception as exc:  # one broken scenario must not hide the others' numbers
            traceback.print_exc()
            print(f"\n{name}  [ERROR]  {exc}")
            report["scenarios"][name] = {"error": repr(exc)}
            failed.append(name)
            continue
        _print(name, result)
        report["scenarios"][name] = {
            **{k: v for k, v in result.items() if k != "stats"},
            "stats": [s.as_dict() for s in result["stats"]],
        }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")
    if failed:
        sys.exit(f"scenarios that did not run: {', '.join(failed)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scenario", action="append", choices=list(SCENARIOS), help="run this one (repeatable)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per scenario (default 3)")
    parser.add_argument("--quick", action="store_true", help="small sizes (development)")
    full = Sizes()
    for flag, field in SIZE_FLAGS.items():
        default = f"default {getattr(full, field)}, quick {getattr(QUICK, field)}"
        parser.add_argument(flag, dest=field, type=int, default=None, help=default)
    args = parser.parse_args()
    _run_all(args.scenario or list(SCENARIOS), args.rounds, _sizes(args))


if __name__ == "__main__":
    main()

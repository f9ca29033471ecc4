"""`make bench`: run the scenarios, print a table (median, min, max, ratio), write JSON.

python -m benchmarks.run                       # every scenario
python -m benchmarks.run --scenario submit_single --rounds 5
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Any

import psutil

from benchmarks.common import ROOT
from benchmarks.scenarios import SCENARIOS

RESULTS = ROOT / "benchmarks" / "results"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    names = args.scenario or list(SCENARIOS)
    report: dict[str, Any] = {"machine": _machine(), "started": time.time(), "scenarios": {}}
    for name in names:
        result = SCENARIOS[name](args.rounds)
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


if __name__ == "__main__":
    main()

"""One reconciler pass or one retention pass, timed, in a process of its own with the
benchmark's OUTRIDER_* settings (the worker's code: `Reconciler.run_once`, `Pruner.run_once`).

python -m benchmarks.ledger_pass reconcile --passes 5
python -m benchmarks.ledger_pass retention --cutoff EPOCH   # jobs ended before EPOCH go

Prints one JSON line: {"ms": [...], ...}. The first reconciler pass (connections, prepared
statements) is not timed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime

from shared.clock import shared_now
from shared.settings import Settings
from worker.lifecycle import Reconciler
from worker.retention import Pruner
from worker.state import WorkerState


async def _reconcile(passes: int) -> dict[str, object]:
    state = await WorkerState.create(Settings(), "ledger-bench")
    try:
        reconciler = Reconciler(state)
        await reconciler.run_once()
        times = []
        for _ in range(passes):
            started = time.perf_counter()
            await reconciler.run_once()
            times.append((time.perf_counter() - started) * 1000)
        return {"ms": times}
    finally:
        await state.close()


async def _retention(cutoff: float) -> dict[str, object]:
    settings = Settings()
    state = await WorkerState.create(settings, "ledger-bench")
    try:
        async with state.sessionmaker() as session:  # connect before the clock starts
            now = await shared_now(session, state.redis)
        retention_s = (now - datetime.fromtimestamp(cutoff, UTC)).total_seconds()
        state.settings = settings.model_copy(update={"job_retention_s": retention_s})
        started = time.perf_counter()
        pruned = await Pruner(state).run_once()
        return {"ms": [(time.perf_counter() - started) * 1000], "jobs": pruned.jobs}
    finally:
        await state.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["reconcile", "retention"])
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--cutoff", type=float, default=0.0)
    args = parser.parse_args()
    if args.what == "reconcile":
        out = asyncio.run(_reconcile(args.passes))
    else:
        out = asyncio.run(_retention(args.cutoff))
    print(json.dumps(out))


if __name__ == "__main__":
    main()

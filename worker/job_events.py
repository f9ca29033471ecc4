"""What a worker tells the world about the jobs it runs: events in the owner's stream.

Every transition the runner writes goes through here once its row has committed, so events
(and the metrics that count them) describe only what the database holds.
"""

from __future__ import annotations

import time
from typing import Any

from shared.events import JobEvent, JobLike
from shared.models import AttemptOutcome, JobStatus
from shared.repositories.execution import Claim, Outcome
from worker import counters
from worker.state import WorkerState

# An attempt's outcome -> (event type, why the job is queued again).
OUTCOME_EVENTS: dict[AttemptOutcome, tuple[str, str | None]] = {
    AttemptOutcome.SUCCEEDED: ("succeeded", None),
    AttemptOutcome.FAILED: ("failed", None),
    AttemptOutcome.RETRYING: ("retrying", None),
    AttemptOutcome.DEFERRED: ("queued", "deferred"),
    AttemptOutcome.INTERRUPTED: ("queued", "interrupted"),
    AttemptOutcome.LOST: ("retrying", "worker_lost"),
}


async def job_started(state: WorkerState, claim: Claim) -> None:
    """A claim committed: the job runs now."""
    counters.attempt_started(claim)
    await state.events.publish([JobEvent.of(claim.job, "started", JobStatus.RUNNING)])


async def job_ended(state: WorkerState, job: JobLike, outcome: Outcome) -> None:
    """An attempt's outcome committed (`job` as it was claimed)."""
    counters.attempt_ended(job, outcome, _duration_s(state, job))
    type_, reason = OUTCOME_EVENTS[outcome.attempt_outcome]
    if outcome.status == JobStatus.FAILED:
        type_ = "failed"  # out of attempts, whatever ended the last one
        state.jobs_failed += 1
    elif outcome.status == JobStatus.SUCCEEDED:
        state.jobs_done += 1
    attempt = job.attempts - (1 if outcome.refund_attempt else 0)
    event = JobEvent(
        type=type_,
        job_id=job.id,
        owner_id=job.owner_id,
        kind=job.kind,
        queue=job.queue,
        attempt=attempt,
        status=outcome.status,
        reason=reason,
        error=_error_summary(outcome.error),
        run_after=outcome.run_after.timestamp()
        if outcome.run_after and outcome.status == JobStatus.QUEUED
        else None,
    )
    await state.events.publish([event])


def job_cancelled(state: WorkerState, job: JobLike) -> None:
    """A running job's attempt closed as cancelled (the API announced the cancel)."""
    counters.attempt_cancelled(job, _duration_s(state, job))


def _duration_s(state: WorkerState, job: JobLike) -> float | None:
    """How long this process ran the attempt; None if it did not (a reconciler's `lost`)."""
    running = state.running.get(job.id)
    if running is None or running.fence != getattr(job, "fence", running.fence):
        return None
    return time.monotonic() - running.started


async def job_progress(state: WorkerState, claim: Claim, progress: dict[str, Any]) -> None:
    """An engine reported how far it got (`stage`, and what it knows: `done`/`total`)."""
    event = JobEvent.of(claim.job, "progress", JobStatus.RUNNING, progress=progress)
    await state.events.publish([event])


def _error_summary(error: dict[str, Any] | None) -> dict[str, Any] | None:
    if not error:
        return None
    return {k: error[k] for k in ("code", "message", "retryable") if k in error}

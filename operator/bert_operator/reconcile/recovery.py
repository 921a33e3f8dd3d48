"""Restarting a stage that failed for an infrastructure reason: the plan's recovery step and its backoff, pure.

A failed stage's MPIJob is classified (failures.py); one the infrastructure failed, with restarts left, is deleted
and made again after an exponential backoff. The restart's bookkeeping lives in the stage's status entry
(``restarts``, ``lastRestartTime``, ...), so it survives operator restarts; the only setting is the backoff, read
once from the operator's configuration.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from bert_common.contract import format_utc, parse_utc
from .. import reasons
from ..status import StagePhase
from . import usage
from .decisions import DeleteMPIJob, Event, Followed
from .failures import classify
from .status_view import (COMPLETION_TIME, LAST_RESTART_REASON, LAST_RESTART_TIME, PHASE, QUEUE_NAME, RESTARTED_MPIJOB_UID,
                          RESTARTS, StageView)

if TYPE_CHECKING:
    from ..api import BertTrainingJob
    from .decisions import Context


@dataclass(frozen=True)
class RecoverySettings:
    """Backoff before re-creating a failed stage: `backoff_seconds` x 2^(restart - 1), at most `max_backoff_seconds`.

    30 s by default, not the Job controller's 10: a trainer killed without SIGTERM leaves its output lease
    (bert_trainer/output_lock.py), and its successor waits for such a lease to expire only when it was last renewed
    more than two renew periods (2 x 15 s) ago; sooner, it takes the old writer for a live one and refuses (exit 2,
    which is never retried). The failure is counted after the old trainer died, so 30 s later is always past that.
    """

    backoff_seconds: float = 30.0
    max_backoff_seconds: float = 360.0

    def delay(self, restart: int) -> float:
        """Seconds between deleting the failed MPIJob and creating restart number `restart` (1, 2, ...)."""
        return min(self.backoff_seconds * 2 ** max(restart - 1, 0), self.max_backoff_seconds)


def due_at(entry: Mapping[str, Any], settings: RecoverySettings) -> datetime.datetime:
    """When the stage's pending restart may create its MPIJob again."""
    started = parse_utc(str(entry["lastRestartTime"]))
    return started + datetime.timedelta(seconds=settings.delay(int(entry.get("restarts") or 1)))


def pending_restart(entry: Mapping[str, Any]) -> bool:
    """Whether the stage's failed MPIJob was deleted for a restart that has not created the new one yet."""
    return entry.get("phase") == "Restarting" and bool(entry.get("restartedMpiJobUid")) and bool(entry.get("lastRestartTime"))


def seconds_until_due(status: Mapping[str, Any], now: datetime.datetime, settings: RecoverySettings) -> float | None:
    """Seconds until the earliest pending restart of a job may go ahead (0 if overdue), None if none waits;
    the operator reconciles the job then instead of at the next resync."""
    waits = [(due_at(entry, settings) - now).total_seconds()
             for entry in status.get("stages") or [] if pending_restart(entry)]
    return max(min(waits), 0.0) if waits else None


def restart_wait(ctx: Context, job: BertTrainingJob, entry: dict[str, Any]) -> Followed:
    """A stage between the delete of its failed MPIJob and its re-creation (once that MPIJob is gone and the backoff
    is over); the same words all along, so waiting writes nothing."""
    limit = job.spec.run_policy.max_restarts
    due = format_utc(due_at(entry, ctx.recovery))
    message = f"restart {entry.get(RESTARTS)} of {limit} (not before {due}): {entry.get(LAST_RESTART_REASON)}"
    return Followed(StagePhase("Restarting", reasons.RESTART_SCHEDULED, message), {**entry, PHASE: "Restarting"})


def failed(ctx: Context, job: BertTrainingJob, entry: dict[str, Any], mpijob: dict[str, Any],
           deleting: bool) -> Followed | DeleteMPIJob:
    """A stage whose MPIJob failed: restart it (delete it first) if the infrastructure failed it and restarts are
    left, else fail the job with the cause."""
    meta = mpijob["metadata"]
    name, uid = meta["name"], str(meta.get("uid") or "")
    stage = StageView(entry)
    delete = DeleteMPIJob(meta.get("namespace", "default"), name, uid, mpijob)
    if uid and uid == stage.restarted_mpijob_uid:  # this failure was counted: only its delete is left
        return restart_wait(ctx, job, entry) if deleting else delete
    failure = classify(mpijob, ctx.observed.pods.get(name, ()))
    end = usage.attempt_end(mpijob, ctx.now)
    # Closed once: a failed stage's entry already has its completionTime when this is planned again.
    closed = entry if stage.completion_time else usage.close_attempt(entry, mpijob, end)
    ended = {**closed, PHASE: "Failed", COMPLETION_TIME: (mpijob.get("status") or {}).get("completionTime") or ctx.now}
    if not failure.retry:
        return Followed(StagePhase("Failed", failure.reason, failure.message), ended)
    restarts, limit = stage.restarts, job.spec.run_policy.max_restarts
    if restarts >= limit:
        message = (f"MPIJob {name} failed for an infrastructure reason after {restarts} restart(s) "
                   f"(runPolicy.maxRestarts: {limit}): {failure.message}")
        return Followed(StagePhase("Failed", reasons.RESTART_LIMIT, message), ended)
    if not deleting:
        return delete
    counted = {**usage.close_attempt(entry, mpijob, end), PHASE: "Restarting", RESTARTS: restarts + 1,
               LAST_RESTART_TIME: ctx.now,
               LAST_RESTART_REASON: f"{failure.reason}: {failure.message}"[:500], RESTARTED_MPIJOB_UID: uid}
    counted.pop(QUEUE_NAME, None)  # the next MPIJob is a new one: its queue is the one it is made with
    waiting = restart_wait(ctx, job, counted)
    return Followed(waiting.phase, waiting.entry,
                    Event("Warning", reasons.STAGE_RESTARTED, f"{entry['name']}: {waiting.phase.message}"))

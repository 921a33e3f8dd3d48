"""The plan's cleanup step: once a sweep with keepTrialCheckpoints: false has succeeded, one Job deletes the
checkpoints of every trial but the best, and status.trialCleanup follows it.

Why after the sweep and not as each trial ends: the best is known only when every trial has ended (results.best is
`final`), and a trial's checkpoints are what a restart of that trial resumes from. Why a Job: the checkpoints are the
tenant's, reachable only with the tenant's credentials, which the operator never holds (render/cleanup.py).

The job's phase stays Succeeded whatever the cleanup does: its results are final and its artifacts (the best
trial's exports) are untouched. The Job is made once, adopted on a 409, and followed until it completes or fails;
then status.trialCleanup is final and the Job is never read again (the job needs no more reconciles for it). A Job
gone before its end was recorded (deleted by hand, its TTL passed while the operator was down) is made again: the
deletion is idempotent. No finalizer: the owner reference lets the garbage collector take the Job with the job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .. import reasons
from ..api import BertTrainingJob
from ..api.stages import Stage
from ..render.cleanup import cleanup_job_name, render_cleanup_job
from ..status import MAX_MESSAGE_BYTES, bounded
from ..tasks import task_of
from .decisions import Context, CreateCleanupJob, Event
from .observe import CLEANUP_ENDED, NOT_READ, RefusedCreate
from .serve_step import owned
from .status_view import TRIAL_CHECKPOINTS, TRIAL_CLEANUP, TRIAL_NAME, TRIALS

REMOVED = "removed"


@dataclass(frozen=True)
class Cleaned:
    """The next status.trialCleanup and the Events it deserves."""

    cleanup: dict[str, Any]
    events: tuple[Event, ...] = field(default=())


def wanted(job: BertTrainingJob) -> bool:
    """Whether the job is a sweep whose other trials lose their checkpoints once it succeeded."""
    sweep = getattr(task_of(job.spec).settings(job.spec), "sweep", None)
    return sweep is not None and not sweep.keep_trial_checkpoints


def step(ctx: Context, job: BertTrainingJob, phase: str, stages: list[Stage], best: str | None
         ) -> CreateCleanupJob | Cleaned | None:
    """The cleanup Job to create, or the next status.trialCleanup; None when cleanup is not the job's business (no
    such sweep, or not succeeded): status.trialCleanup is then left as it was. `best`: the best trial's stage name
    (None: no trial reported the selected metric)."""
    if phase != "Succeeded" or not wanted(job):
        return None
    old = ctx.old.get(TRIAL_CLEANUP) if isinstance(ctx.old.get(TRIAL_CLEANUP), dict) else None
    if old is not None and old.get("phase") in CLEANUP_ENDED:
        return Cleaned(old)
    if best is None:  # (no Job is made in these two cases: status.trialCleanup names none)
        return _ended({}, "Succeeded", ctx.now, "no trial reported the metric the sweep selects by, so there is no "
                                                "best: every trial keeps its checkpoints")
    removed = [stage for stage in stages if stage.name != best]
    if not removed:
        return _ended({"kept": best}, "Succeeded", ctx.now, "one trial, the best: nothing to remove")
    name = cleanup_job_name(job.metadata.name)
    base = {"job": name, "kept": best, "removed": [stage.name for stage in removed]}
    found = ctx.observed.cleanup_job
    if isinstance(found, RefusedCreate):
        return _ended(base, "Failed", ctx.now, f"the API server refused Job {name}: {found.message}")
    if found is None or found is NOT_READ:
        return CreateCleanupJob(render_cleanup_job(job, ctx.settings, removed))
    uid = ctx.body["metadata"].get("uid")
    if uid and not owned(found, uid):  # (a local run's job has no uid: the one Job of that name is the one it made)
        return _ended(base, "Failed", ctx.now, f"a Job named {name} exists and is not this job's (no controller "
                                               "reference to it); the checkpoints stay")
    return _following(old, base, found, ctx.now)


def _following(old: dict[str, Any] | None, base: dict[str, Any], found: Mapping[str, Any], now: str) -> Cleaned:
    """status.trialCleanup from the Job's conditions: Complete ends it Succeeded, Failed ends it Failed (the
    checkpoints that were not deleted stay), anything else is Running (Kueue may hold it suspended)."""
    raw = found.get("status")
    status: dict[str, Any] = raw if isinstance(raw, dict) else {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []
                  if isinstance(c, dict) and c.get("status") == "True"}
    trials = ", ".join(base["removed"])
    if "Complete" in conditions:
        return _ended(base, "Succeeded", now, f"checkpoints of {trials} removed; {base['kept']} (the best) keeps "
                                              "its own")
    if "Failed" in conditions:
        failed = conditions["Failed"]
        why = ": ".join(str(part) for part in (failed.get("reason"), failed.get("message")) if part) or "failed"
        return _ended(base, "Failed", now, f"Job {base['job']} failed ({why}); see kubectl logs job/{base['job']}. "
                                           "Checkpoints it did not reach stay")
    suspended = conditions.get("Suspended")  # (Kueue's webhook suspends a Job before the Job controller says so)
    if suspended is not None or (found.get("spec") or {}).get("suspend") is True:
        message = f"suspended (queued: {(suspended or {}).get('message') or 'waiting for admission'})"
    else:
        message = f"removing the checkpoints of {trials}"
    running = {**base, "phase": "Running", "message": bounded(message, MAX_MESSAGE_BYTES)}
    started = () if old is not None else (Event("Normal", reasons.TRIAL_CLEANUP_STARTED,
                                                f"Job {base['job']} made: it removes the checkpoints of {trials}; "
                                                f"{base['kept']} (the best) keeps its own"),)
    return Cleaned(running, started)


def _ended(base: dict[str, Any], phase: str, now: str, message: str) -> Cleaned:
    cleanup = {**base, "phase": phase, "message": bounded(message, MAX_MESSAGE_BYTES), "completionTime": now}
    if phase == "Failed":
        return Cleaned(cleanup, (Event("Warning", reasons.TRIAL_CLEANUP_FAILED, message),))
    removed = bool(base.get("removed"))
    return Cleaned(cleanup, (Event("Normal", reasons.TRIAL_CHECKPOINTS_REMOVED, message),) if removed else ())


def with_cleanup(status: dict[str, Any], cleaned: Cleaned) -> dict[str, Any]:
    """`status` with status.trialCleanup, and `checkpoints: removed` on each trial whose checkpoints the Job
    deleted once it completed."""
    cleanup = cleaned.cleanup
    out = {**status, TRIAL_CLEANUP: cleanup}
    gone = set(cleanup.get("removed") or []) if cleanup.get("phase") == "Succeeded" else set()
    trials = status.get(TRIALS)
    if gone and isinstance(trials, list):
        out[TRIALS] = [{**t, TRIAL_CHECKPOINTS: REMOVED} if isinstance(t, dict) and t.get(TRIAL_NAME) in gone else t
                       for t in trials]
    return out


__all__ = ["Cleaned", "REMOVED", "step", "wanted", "with_cleanup"]

"""The plan's step for one stage that has not succeeded: its phase from its MPIJob, or the write it needs first.

Whose MPIJob it is (ours, a deleted namesake's, someone else's) is decided here; what follows from its phase is
each concern's own step: a failed one goes to recovery.py, a queued one to kueue_step.py, the GPU time it holds to
usage.py, and a stage still to create waits for the policies (policy_step.py).
"""

from __future__ import annotations

from typing import Any, Mapping

from bert_common.contract import parse_utc
from .. import reasons
from .. import status as sm
from ..api import BertTrainingJob
from ..api.presets import KIND
from ..api.stages import Stage
from ..render.values import TEMPLATES_ANNOTATION
from . import kueue_step, recovery, template_step, usage
from .decisions import Action, Context, Followed, Held
from .observe import Deleted, RefusedCreate
from .policy_step import hold
from .status_view import COMPLETION_TIME, PHASE, QUEUE_NAME, STAGE_MPIJOB, STAGE_NAME, STAGE_TEMPLATES, START_TIME


def follow(ctx: Context, job: BertTrainingJob, stage: Stage, entry: dict[str, Any]) -> Followed | Action | Held:
    """The phase of one stage that has not succeeded, or the write it needs first."""
    meta = ctx.body["metadata"]
    name = stage.mpijob_name(job.metadata.name)
    seen = ctx.observed.get(name)
    if seen is None:
        if recovery.pending_restart(entry) and parse_utc(ctx.now) < recovery.due_at(entry, ctx.recovery):
            return recovery.restart_wait(ctx, job, entry)
        return hold(ctx) or template_step.create(ctx, job, stage, entry)
    if isinstance(seen, RefusedCreate):  # sending it again cannot help: fail with the server's reason
        refused = f"the API server refused MPIJob {name} ({seen.status}): {seen.message}"
        return Followed(sm.StagePhase("Failed", reasons.REFUSED, refused),
                        {**entry, PHASE: "Failed", COMPLETION_TIME: ctx.now})
    deleting = isinstance(seen, Deleted) or bool((seen.get("metadata") or {}).get("deletionTimestamp"))
    mpijob = seen.mpijob if isinstance(seen, Deleted) else seen
    earlier = None if _owned(mpijob, meta.get("uid")) else _earlier_incarnation(mpijob, meta)
    if earlier is not None:
        return Followed(sm.StagePhase("Pending", reasons.WAITING_FOR_OLD_MPIJOB,
                                      f"MPIJob {name} still belongs to a deleted BertTrainingJob of this name (uid "
                                      f"{earlier}); waiting for the garbage collector to remove it"),
                        {**entry, PHASE: "Pending"})
    if not _owned(mpijob, meta.get("uid")):
        return Followed(sm.StagePhase("Failed", reasons.NAME_CONFLICT,
                                      f"MPIJob {name} exists and is not owned by this BertTrainingJob"), entry)
    mpi_status = mpijob.get("status") or {}
    entry = {**entry, STAGE_NAME: stage.name, STAGE_MPIJOB: name}
    used = ((mpijob.get("metadata") or {}).get("annotations") or {}).get(TEMPLATES_ANNOTATION)
    if isinstance(used, str) and used:  # the templates this MPIJob was made with (template_step.py)
        entry[STAGE_TEMPLATES] = used.split(",")[:16]
    entry.setdefault(START_TIME, mpi_status.get("startTime") or ctx.now)
    queue = kueue_step.stage_queue(entry, mpijob)
    if queue:  # what the policies decided for this MPIJob holds until it ends, whatever they say later
        entry[QUEUE_NAME] = queue
    phase = sm.stage_phase(mpijob)
    if phase.phase == "Failed":  # (a Deleted one is always a failed one: only those are deleted)
        return recovery.failed(ctx, job, entry, mpijob, deleting)
    patch = kueue_step.suspend_patch(job, mpijob, ctx.observed, queue)
    if patch is not None:
        return patch
    if name in ctx.observed.waiting and phase.phase == "Created":
        phase = sm.StagePhase(phase.phase, reasons.PODS_PENDING, ctx.observed.waiting[name])
    phase = kueue_step.queue_phase(job, mpijob, phase, ctx.observed, queue)
    entry = usage.track(entry, mpijob, phase.phase, ctx.now)
    entry[PHASE] = phase.phase
    if phase.phase in sm.TERMINAL_PHASES:
        entry.setdefault(COMPLETION_TIME, mpi_status.get("completionTime") or ctx.now)
    return Followed(phase, entry)


def _owned(mpijob: Mapping[str, Any], uid: str | None) -> bool:
    owners = (mpijob.get("metadata") or {}).get("ownerReferences") or []
    return uid is None or any(o.get("uid") == uid for o in owners)


def _earlier_incarnation(mpijob: Mapping[str, Any], meta: Mapping[str, Any]) -> str | None:
    """The uid of a deleted BertTrainingJob of the same name that still owns `mpijob`, if that is whose it is.

    `kubectl delete` then `apply` before the garbage collector has removed the old job's MPIJobs
    finds them under our names; they go away on their own, so the new job waits rather than fails."""
    for owner in (mpijob.get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("kind") == KIND and owner.get("name") == meta.get("name") and owner.get("uid") != meta.get("uid"):
            return str(owner.get("uid"))
    return None

"""The plan's Kueue step: which queue a stage's MPIJob is in, a suspend toggle for it, and Queued while Kueue holds it.

Reading Kueue (Workloads, their conditions, the activation patch) is bert_operator/kueue.py; this step decides, for
one stage of a plan, what a queued MPIJob means: Kueue owns its runPolicy.suspend, so the user's suspend goes to the
Workload's spec.active instead, and a stage Kueue has suspended is Queued with Kueue's reason.
"""

from __future__ import annotations

from typing import Any, Mapping

from .. import kueue
from .. import status as sm
from ..api import BertTrainingJob
from .decisions import PatchMPIJob, PatchWorkload
from .observe import Observed
from .status_view import QUEUE_NAME


def stage_queue(entry: Mapping[str, Any], mpijob: Mapping[str, Any]) -> str | None:
    """The Kueue LocalQueue of a stage's MPIJob: its queue-name label (what Kueue acts on), else the queue the stage
    recorded when it was made. Not the job's queueName now: a policy deleted or edited since must not take a queued
    stage from Kueue (nor hand an unqueued one to it)."""
    label = ((mpijob.get("metadata") or {}).get("labels") or {}).get(kueue.QUEUE_LABEL)
    return label or entry.get(QUEUE_NAME) or None


def suspend_patch(job: BertTrainingJob, mpijob: Mapping[str, Any], observed: Observed,
                  queue: str | None) -> PatchMPIJob | PatchWorkload | None:
    """Pass a runPolicy.suspend toggle on to a stage that is still running: to its MPIJob, or, for a queued stage
    (Kueue owns the MPIJob's suspend: never written here), to its Workload's spec.active."""
    if sm.stage_phase(dict(mpijob)).phase in sm.TERMINAL_PHASES:
        return None
    want = job.spec.run_policy.suspend
    meta = mpijob["metadata"]
    if queue:
        workload = observed.workloads.get(meta["name"])
        patch = kueue.activation_patch(workload, want)
        if workload is None or isinstance(workload, kueue.NotInstalled) or patch is None:  # (no patch for those)
            return None
        return PatchWorkload(meta["namespace"], workload["metadata"]["name"], meta["name"], patch)
    have = bool(((mpijob.get("spec") or {}).get("runPolicy") or {}).get("suspend", False))
    if want == have:
        return None
    return PatchMPIJob(meta["namespace"], meta["name"], {"spec": {"runPolicy": {"suspend": want}}})


def queue_phase(job: BertTrainingJob, mpijob: dict[str, Any], phase: sm.StagePhase, observed: Observed,
                queue: str | None) -> sm.StagePhase:
    """A queued stage that Kueue holds (suspended, and not by the user) is Queued, with Kueue's reason."""
    if not queue or job.spec.run_policy.suspend or phase.phase in sm.TERMINAL_PHASES:
        return phase
    if kueue.suspended(mpijob) or phase.phase == "Suspended":
        return kueue.queued_phase(mpijob, observed.workloads.get(mpijob["metadata"]["name"]))
    return phase

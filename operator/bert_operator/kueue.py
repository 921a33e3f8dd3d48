"""Kueue as this operator meets it: the labels it reads, the Workload it follows, and why a stage is queued.

With ``spec.queueName`` set, Kueue owns ``runPolicy.suspend`` of every stage's MPIJob: its webhook creates the
MPIJob suspended, its controller clears suspend when the MPIJob's Workload is admitted and sets it again to
preempt. The operator renders the MPIJob suspended and never writes suspend afterwards; it reads the Workload
(found by the ``kueue.x-k8s.io/job-uid`` label Kueue puts on it) to say why the stage waits, and a user's
``runPolicy.suspend: true`` becomes the Workload's ``spec.active: false`` (Kueue then evicts and suspends it).

Pure functions only; the reads and writes are :mod:`bert_operator.kube`'s.
"""

from __future__ import annotations

from typing import Any, Mapping, TypeGuard

from .api.reserved import KUEUE_QUEUE_LABEL as QUEUE_LABEL
from .status import StagePhase
from . import reasons

#: Kueue labels each Workload with the uid of the job it stands for.
JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
WORKLOAD_GROUP, WORKLOAD_VERSION, WORKLOAD_PLURAL = "kueue.x-k8s.io", "v1beta1", "workloads"

class KueueNotInstalled(Exception):
    """The API server does not serve Kueue's Workloads (a list answered 404): Kueue is not installed."""


class NotInstalled:
    """What observing a queued stage's Workload found when Kueue is not installed (in place of a Workload or None)."""

    def __repr__(self) -> str:
        return "NOT_INSTALLED"


NOT_INSTALLED = NotInstalled()


def is_queued(mpijob: Mapping[str, Any]) -> bool:
    """Whether an MPIJob goes through Kueue (it carries the queue-name label the renderer set)."""
    return bool(((mpijob.get("metadata") or {}).get("labels") or {}).get(QUEUE_LABEL))


def suspended(mpijob: Mapping[str, Any]) -> bool:
    """runPolicy.suspend of an MPIJob as it stands (Kueue's decision for a queued one)."""
    return bool(((mpijob.get("spec") or {}).get("runPolicy") or {}).get("suspend", False))


def _conditions(workload: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("type")): c for c in (workload.get("status") or {}).get("conditions") or []}


def _true(condition: Mapping[str, Any] | None) -> TypeGuard[Mapping[str, Any]]:
    return condition is not None and condition.get("status") == "True"


def _said(condition: Mapping[str, Any]) -> str:
    """'Reason: message' of a Workload condition, as Kueue wrote it."""
    reason, message = condition.get("reason") or "", condition.get("message") or ""
    return f"{reason}: {message}" if reason and message else str(reason or message)


def queued_phase(mpijob: Mapping[str, Any], workload: Mapping[str, Any] | NotInstalled | None) -> StagePhase:
    """Why a queued stage's MPIJob is suspended, from its Workload's conditions (pure)."""
    name = (mpijob.get("metadata") or {}).get("name")
    queue = ((mpijob.get("metadata") or {}).get("labels") or {}).get(QUEUE_LABEL)
    if isinstance(workload, NotInstalled):
        return StagePhase("Queued", reasons.KUEUE_NOT_INSTALLED,
                          f"MPIJob {name} waits for Kueue (LocalQueue {queue}), but Kueue is not installed: the API server "
                          f"does not serve {WORKLOAD_PLURAL}.{WORKLOAD_GROUP}; install Kueue, or delete the job and "
                          "create it again without spec.queueName (a started job's spec cannot change)")
    if workload is None:
        return StagePhase("Queued", reasons.WAITING_FOR_WORKLOAD,
                          f"MPIJob {name} waits for Kueue (LocalQueue {queue}); Kueue has not made its Workload yet")
    wl = (workload.get("metadata") or {}).get("name")
    conditions = _conditions(workload)
    evicted, reserved, admitted = conditions.get("Evicted"), conditions.get("QuotaReserved"), conditions.get("Admitted")
    if _true(evicted) and not _true(admitted):
        return StagePhase("Queued", reasons.EVICTED,
                          f"Workload {wl} was evicted ({_said(evicted)}); the stage resumes from its last checkpoint "
                          "when Kueue admits it again")
    if _true(admitted):
        return StagePhase("Queued", reasons.ADMITTED, f"Workload {wl} is admitted; Kueue is starting MPIJob {name}")
    if _true(reserved):
        detail = _said(admitted) if admitted else "quota reserved"
        return StagePhase("Queued", reasons.WAITING_FOR_ADMISSION_CHECKS,
                          f"Workload {wl}: {detail}; waiting for its admission checks")
    if reserved and reserved.get("reason") == "Inadmissible":
        return StagePhase("Queued", reasons.INADMISSIBLE, f"Workload {wl} cannot be admitted: {reserved.get('message')}")
    detail = _said(reserved) if reserved else f"pending in LocalQueue {queue}"
    return StagePhase("Queued", reasons.WAITING_FOR_QUOTA, f"Workload {wl}: {detail}")


def activation_patch(workload: Mapping[str, Any] | NotInstalled | None, user_suspend: bool) -> dict[str, Any] | None:
    """The merge patch that makes a Workload's spec.active follow the user's runPolicy.suspend, if it must change."""
    if workload is None or isinstance(workload, NotInstalled):
        return None
    active = (workload.get("spec") or {}).get("active", True) is not False
    if active != user_suspend:
        return None
    return {"spec": {"active": not user_suspend}}

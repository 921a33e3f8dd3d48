"""Observe: read the MPIJobs a job's next decision depends on; the only reads a reconcile makes.

Which MPIJobs that is follows from the job's recorded status alone (no spec
parsing): the stages recorded with an MPIJob that had not succeeded yet. A stage
never created has nothing to read; the plan creates it, and a 409 adopts an
MPIJob that exists after all. An MPIJob the caller already holds (the watch
event that woke us) is used as is. What the MPIJobs read say decides the rest:
the Warning Events of a stage that waits for pods, the pods of a stage whose
failure was not judged yet (the cause decides a restart), the Kueue Workload
of a queued stage that is suspended or that the user suspends.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping

from .. import dependencies, kueue
from ..policy import PoliciesUnreadable, PolicyInput
from ..status import TERMINAL_PHASES, stage_phase
from ..render.cleanup import cleanup_job_name
from .ports import MPIJobApi, ReadFailed
from .status_view import ACCEPTED_SPEC, TRIAL_CLEANUP

log = logging.getLogger("bert_operator.reconcile")


@dataclass(frozen=True)
class RefusedCreate:
    """What a create answered when the API server refused the MPIJob itself (schema or admission)."""

    name: str
    status: int
    message: str


@dataclass(frozen=True)
class Deleted:
    """What a delete answered when the MPIJob was gone at once (no dependents left to wait for): the MPIJob as it
    was before, so that the plan still knows which failure it deleted."""

    mpijob: dict[str, Any]


class NotRead:
    """The job's InferenceService was not read (the job had not succeeded, or is not served): a create then adopts
    one that exists (409), and nothing is deleted on a guess."""

    def __repr__(self) -> str:
        return "NOT_READ"


NOT_READ = NotRead()


@dataclass(frozen=True)
class Observed:
    """What the next decision depends on, by MPIJob name: the MPIJobs (None: looked up and not found;
    RefusedCreate: creating it was refused; Deleted: deleted by this reconcile); for stages that wait, the newest
    Warning that says why; for failed stages not judged yet, their pods; for queued stages, their Kueue Workload
    (None: Kueue has made none; kueue.NOT_INSTALLED: the Workload API is not served)."""

    mpijobs: Mapping[str, Any] = field(default_factory=dict)
    waiting: Mapping[str, str] = field(default_factory=dict)
    pods: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)
    workloads: Mapping[str, dict[str, Any] | kueue.NotInstalled | None] = field(default_factory=dict)
    #: The namespace's labels and the BertTrainingPolicies (None: the operator applies none; PoliciesUnreadable:
    #: reading them failed).
    policy: PolicyInput | PoliciesUnreadable | None = None
    #: The jobs a job that has not started takes inputs from, directly or through others (None: not found).
    producers: Mapping[str, dict[str, Any] | None] = field(default_factory=dict)
    #: The platform's job templates by name (templates/catalog.py), as they were when the reconcile began.
    templates: Mapping[str, Any] = field(default_factory=dict)
    #: The job's InferenceService (spec.serve): as read or as a write answered, None (none), RefusedCreate, NOT_READ.
    inference_service: Any = NOT_READ
    #: A sweep's cleanup Job (sweep.keepTrialCheckpoints: false), the same way.
    cleanup_job: Any = NOT_READ

    def get(self, name: str) -> Any:
        return self.mpijobs.get(name)

    def with_answers(self, mpijobs: Mapping[str, Any], workloads: Mapping[str, Any] | None = None,
                     inference_service: Any = NOT_READ, cleanup_job: Any = NOT_READ) -> "Observed":
        """This observation after writes, with the API server's answers in place of what was read."""
        isvc = self.inference_service if inference_service is NOT_READ else inference_service
        cleanup = self.cleanup_job if cleanup_job is NOT_READ else cleanup_job
        return replace(self, mpijobs={**self.mpijobs, **mpijobs}, workloads={**self.workloads, **(workloads or {})},
                       inference_service=isvc, cleanup_job=cleanup)


def names_to_read(status: Mapping[str, Any]) -> list[str]:
    """MPIJobs of recorded stages that had not succeeded (normally the one running now)."""
    return [entry["mpiJob"] for entry in status.get("stages") or []
            if entry.get("mpiJob") and entry.get("phase") != "Succeeded"]


#: The stage phase in which pods may be missing and Warnings may say why: the MPI Operator sets Created when it
#: first handles an MPIJob, before it makes any pod, so before Created there is nothing to read (and a job's
#: start costs no Event list).
WAITING_PHASE = "Created"


def _when(event: Mapping[str, Any]) -> str:
    series = event.get("series") or {}
    return str(series.get("lastObservedTime") or event.get("lastTimestamp") or event.get("eventTime")
               or event.get("firstTimestamp") or "")


def is_pod_of(pod: str, mpijob: str) -> bool:
    """The MPI Operator's pod names: `<mpijob>-worker-<n>` and the launcher Job's `<mpijob>-launcher-<suffix>`
    (a prefix test alone would take job `a-glue`'s pods for job `a`'s stage `glue`'s)."""
    rest = pod[len(mpijob) + 1:] if pod.startswith(f"{mpijob}-") else ""
    return bool(re.fullmatch(r"worker-\d+|launcher(-[a-z0-9]+)?", rest))


def why_waiting(events: Iterable[Mapping[str, Any]], mpijob: str, uid: str | None = None,
                created: str | None = None) -> str | None:
    """The newest Warning about an MPIJob or one of its pods (`<mpijob>-launcher-...`, `<mpijob>-worker-N`), as
    'pod x-worker-0: FailedScheduling: 0/4 nodes are available: ...' (pure).

    The MPI Operator reports pods it could not create only as Warning Events on the MPIJob (a missing
    PriorityClass, a quota), and the scheduler reports unschedulable pods only as FailedScheduling Events on
    the pods; the MPIJob gets no condition for either.

    A restarted stage's MPIJob has the name of the one it replaces, and so have its pods: the Events of the old
    ones stay for an hour. So an Event counts only if it is about this MPIJob, by its `uid` (involvedObject.uid, as
    the MPI Operator posts them), and, for pods (whose uids the operator does not know) or an Event without a uid,
    only if it was last seen after the MPIJob was `created`."""
    relevant = []
    for event in events:
        involved = event.get("involvedObject") or {}
        kind, name = involved.get("kind"), str(involved.get("name") or "")
        if event.get("type") != "Warning":
            continue
        if kind == "MPIJob" and name == mpijob:
            if uid and involved.get("uid"):
                if involved.get("uid") != uid:
                    continue
            elif not _since(event, created):
                continue
        elif not (kind == "Pod" and is_pod_of(name, mpijob) and _since(event, created)):
            continue
        relevant.append(event)
    if not relevant:
        return None
    newest = max(relevant, key=_when)
    involved = newest.get("involvedObject") or {}
    text = f"{str(involved.get('kind')).lower()} {involved.get('name')}: {newest.get('reason')}: {newest.get('message')}"
    return text[:500]


def _since(event: Mapping[str, Any], created: str | None) -> bool:
    """Whether an Event was last seen at or after `created` (RFC 3339 UTC times, compared to the second)."""
    return not created or _when(event)[:19] >= str(created)[:19]


def _replaced(mpijob: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """Whether `mpijob` is the failed MPIJob a restart deleted: a late watch event of it (kopf orders events per
    object, and the re-created MPIJob is another object) says nothing about the stage now, so it is read again."""
    meta = mpijob.get("metadata") or {}
    uid = meta.get("uid")  # (an MPIJob without one, as an emulator may serve it, was never restarted by uid)
    return bool(uid) and any(entry.get("mpiJob") == meta.get("name") and entry.get("restartedMpiJobUid") == uid
                             for entry in status.get("stages") or [])


def _unjudged_failures(status: Mapping[str, Any], mpijobs: Mapping[str, Any]) -> dict[str, str]:
    """Failed MPIJobs whose failure the status has not counted yet, with their stage's name."""
    out = {}
    for entry in status.get("stages") or []:
        mpijob = mpijobs.get(entry.get("mpiJob") or "")
        if not isinstance(mpijob, dict) or stage_phase(mpijob).phase != "Failed" or entry.get("phase") == "Failed":
            continue
        if (mpijob.get("metadata") or {}).get("uid") != entry.get("restartedMpiJobUid"):
            out[entry["mpiJob"]] = entry["name"]
    return out


def _needs_workload(mpijob: Any, user_suspend: bool) -> bool:
    """A queued, unfinished MPIJob that Kueue holds (why?) or that the user suspends (its Workload is deactivated)."""
    if not isinstance(mpijob, dict) or not kueue.is_queued(mpijob) or not (mpijob.get("metadata") or {}).get("uid"):
        return False
    phase = stage_phase(mpijob).phase
    return phase not in TERMINAL_PHASES and (kueue.suspended(mpijob) or phase == "Suspended" or user_suspend)


def observe(api: MPIJobApi, body: Mapping[str, Any], held: dict[str, Any] | None = None,
            policy: PolicyInput | PoliciesUnreadable | None = None,
            jobs: Callable[[str, str], dict[str, Any] | None] | None = None,
            templates: Mapping[str, Any] | None = None) -> Observed:
    """The MPIJobs `body`'s next step depends on, read from `api` unless `held` is one of them; while a stage is
    Created but not running, the Warning Events of its namespace (one list) that may say why; the pods of a stage
    that failed (one list); the Workload of a queued stage Kueue holds or the user suspends (one list)."""
    meta = body.get("metadata") or {}
    namespace = meta.get("namespace", "default")
    status = body.get("status") or {}
    mpijobs: dict[str, Any] = {}
    if held is not None and not _replaced(held, status):
        mpijobs[held["metadata"]["name"]] = held
    for name in names_to_read(status):
        if name not in mpijobs:
            mpijobs[name] = api.get_mpijob(namespace, name)
    pods: dict[str, list[dict[str, Any]]] = {}
    for name, stage in _unjudged_failures(status, mpijobs).items():
        # Unreadable pods: judged from the MPIJob's condition alone (an install without pods: list). The port says a
        # read failed with ReadFailed; anything else it raises is a bug, and propagates.
        try:
            pods[name] = api.list_stage_pods(namespace, meta.get("name", ""), stage)
        except ReadFailed as exc:
            log.warning("pods unreadable mpijob=%s/%s error=%s", namespace, name, exc)
    user_suspend = ((body.get("spec") or {}).get("runPolicy") or {}).get("suspend") is True
    workloads: dict[str, dict[str, Any] | kueue.NotInstalled | None] = {}
    for name, mpijob in mpijobs.items():
        if _needs_workload(mpijob, user_suspend):
            try:
                workloads[name] = api.find_workload(namespace, mpijob["metadata"]["uid"])
            except kueue.KueueNotInstalled:  # said by the stage's reason (KueueNotInstalled), not as a fault
                workloads[name] = kueue.NOT_INSTALLED
            except ReadFailed as exc:  # why a stage is queued is a courtesy: Kueue's API may be refused
                log.warning("workload unreadable mpijob=%s/%s error=%s", namespace, name, exc)
                workloads[name] = None
    waiting_stages = [name for name, mpijob in mpijobs.items()
                      if isinstance(mpijob, dict) and stage_phase(mpijob).phase == WAITING_PHASE]
    waiting: dict[str, str] = {}
    if waiting_stages:
        try:
            events = api.list_warning_events(namespace)
        except ReadFailed as exc:  # why a stage waits is a courtesy: never let reading it stop the job (RBAC, 5xx)
            log.warning("warning events unreadable namespace=%s error=%s", namespace, exc)
            events = []
        for name in waiting_stages:
            mpijob_meta = mpijobs[name].get("metadata") or {}
            reason = why_waiting(events, name, mpijob_meta.get("uid"), mpijob_meta.get("creationTimestamp"))
            if reason:
                waiting[name] = reason
    inference_service: Any = NOT_READ
    if serves(body):
        try:
            inference_service = api.get_inference_service(namespace, meta.get("name", ""))
        except ReadFailed as exc:  # not read: the plan neither creates over it nor deletes it, and says so
            log.warning("inference service unreadable job=%s/%s error=%s", namespace, meta.get("name"), exc)
    cleanup_job: Any = NOT_READ
    if cleans(body):
        try:
            cleanup_job = api.get_batch_job(namespace, cleanup_job_name(meta.get("name", "")))
        except ReadFailed as exc:  # not read: a create adopts the one that exists (409)
            log.warning("cleanup job unreadable job=%s/%s error=%s", namespace, meta.get("name"), exc)
    producers: dict[str, dict[str, Any] | None] = {}
    if jobs is not None and not status.get("resolved"):  # a started job has its inputs: no other job is read
        producers = dependencies.chain(meta.get("name", ""), body.get("spec") or {}, lambda name: jobs(namespace, name))
    return Observed(mpijobs, waiting, pods, workloads, policy, producers, templates or {}, inference_service,
                    cleanup_job)


def serves(body: Mapping[str, Any]) -> bool:
    """Whether a job's InferenceService matters to its next decision: it has succeeded, and it asks to be served
    (spec.serve) or was (status.serving: to follow it, or to delete it)."""
    status = body.get("status") or {}
    return status.get("phase") == "Succeeded" and bool((body.get("spec") or {}).get("serve") or status.get("serving"))


#: The cleanup Job's phases after which it is not read again.
CLEANUP_ENDED = ("Succeeded", "Failed")


def cleans(body: Mapping[str, Any]) -> bool:
    """Whether a job's cleanup Job matters to its next decision: a sweep with keepTrialCheckpoints: false that has
    succeeded and whose cleanup has not ended. Read from the spec the job started with (status.acceptedSpec), which
    the plan follows: an edit after the start is refused, and must not start or stop the following."""
    status = body.get("status") or {}
    if status.get("phase") != "Succeeded":
        return False
    cleanup = status.get(TRIAL_CLEANUP)
    if isinstance(cleanup, dict) and cleanup.get("phase") in CLEANUP_ENDED:
        return False
    accepted = status.get(ACCEPTED_SPEC)
    task = (accepted if isinstance(accepted, dict) else body.get("spec") or {}).get("task")
    return isinstance(task, dict) and any(
        isinstance(settings, dict) and isinstance(settings.get("sweep"), dict)
        and settings["sweep"].get("keepTrialCheckpoints") is False for settings in task.values())

"""Observe: read the MPIJobs a job's next decision depends on; the only reads a reconcile makes.

Which MPIJobs that is follows from the job's recorded status alone (no spec
parsing): the stages recorded with an MPIJob that had not succeeded yet. A stage
never created has nothing to read; the plan creates it, and a 409 adopts an
MPIJob that exists after all. An MPIJob the caller already holds (the watch
event that woke us) is used as is.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

from ..status import stage_phase
from .ports import MPIJobApi

log = logging.getLogger("bert_operator.reconcile")


@dataclass(frozen=True)
class RefusedCreate:
    """What a create answered when the API server refused the MPIJob itself (schema or admission)."""

    name: str
    status: int
    message: str


@dataclass(frozen=True)
class Observed:
    """What the next decision depends on: MPIJobs by name (None: looked up and not found; RefusedCreate: creating
    it was refused), and for stages that wait, the newest Warning that says why (by MPIJob name)."""

    mpijobs: Mapping[str, Any] = field(default_factory=dict)
    waiting: Mapping[str, str] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        return self.mpijobs.get(name)

    def with_answers(self, answers: Mapping[str, Any]) -> "Observed":
        """This observation after MPIJob writes, with the API server's answers in place of what was read."""
        return replace(self, mpijobs={**self.mpijobs, **answers})


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


def _is_pod_of(pod: str, mpijob: str) -> bool:
    """The MPI Operator's pod names: `<mpijob>-worker-<n>` and the launcher Job's `<mpijob>-launcher-<suffix>`
    (a prefix test alone would take job `a-glue`'s pods for job `a`'s stage `glue`'s)."""
    rest = pod[len(mpijob) + 1:] if pod.startswith(f"{mpijob}-") else ""
    return bool(re.fullmatch(r"worker-\d+|launcher(-[a-z0-9]+)?", rest))


def why_waiting(events: Iterable[Mapping[str, Any]], mpijob: str) -> str | None:
    """The newest Warning about an MPIJob or one of its pods (`<mpijob>-launcher-...`, `<mpijob>-worker-N`), as
    'pod x-worker-0: FailedScheduling: 0/4 nodes are available: ...' (pure).

    The MPI Operator reports pods it could not create only as Warning Events on the MPIJob (a missing
    PriorityClass, a quota), and the scheduler reports unschedulable pods only as FailedScheduling Events on
    the pods; the MPIJob gets no condition for either."""
    relevant = []
    for event in events:
        involved = event.get("involvedObject") or {}
        kind, name = involved.get("kind"), str(involved.get("name") or "")
        if event.get("type") != "Warning":
            continue
        if (kind == "MPIJob" and name == mpijob) or (kind == "Pod" and _is_pod_of(name, mpijob)):
            relevant.append(event)
    if not relevant:
        return None
    newest = max(relevant, key=_when)
    involved = newest.get("involvedObject") or {}
    text = f"{str(involved.get('kind')).lower()} {involved.get('name')}: {newest.get('reason')}: {newest.get('message')}"
    return text[:500]


def observe(api: MPIJobApi, body: Mapping[str, Any], held: dict[str, Any] | None = None) -> Observed:
    """The MPIJobs `body`'s next step depends on, read from `api` unless `held` is one of them; and, while a stage is
    Created but not running, the Warning Events of its namespace (one list) that may say why."""
    namespace = (body.get("metadata") or {}).get("namespace", "default")
    mpijobs: dict[str, Any] = {}
    if held is not None:
        mpijobs[held["metadata"]["name"]] = held
    for name in names_to_read(body.get("status") or {}):
        if name not in mpijobs:
            mpijobs[name] = api.get_mpijob(namespace, name)
    waiting_stages = [name for name, mpijob in mpijobs.items()
                      if isinstance(mpijob, dict) and stage_phase(mpijob).phase == WAITING_PHASE]
    waiting: dict[str, str] = {}
    if waiting_stages:
        try:
            events = api.list_warning_events(namespace)
        except Exception as exc:  # why a stage waits is a courtesy: never let reading it stop the job (RBAC, 5xx)
            log.warning("warning events unreadable namespace=%s error=%s", namespace, type(exc).__name__)
            events = []
        for name in waiting_stages:
            reason = why_waiting(events, name)
            if reason:
                waiting[name] = reason
    return Observed(mpijobs, waiting)

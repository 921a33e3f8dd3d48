"""Reconciling one BertTrainingJob: observe its MPIJobs, plan, write once.

Idempotent by construction: MPIJob names are deterministic (so a repeated
create is a 409 and the existing MPIJob is adopted), everything the operator
knows lives in the job's status, and status is written only when it changes.
Handlers call :meth:`Reconciler.reconcile` for any event; it never assumes
which event it is answering.

A reconcile's output is its return value (:class:`Reconciled`): the body it is given is read, never written, and the
caller keeps the status it returns where it keeps its jobs (the operator's Runtime.jobs, local mode's run).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..api import BertTrainingJob, SpecError
from ..api.parse import parse_job
from bert_common.contract import utc_now
from ..metrics import RECONCILE_SECONDS
from ..policy import PoliciesUnreadable, PolicyInput
from ..render import RenderSettings
from ..tasks import TASKS
from .observe import observe
from .plan import needs_work, plan
from .ports import EventSink, MPIJobApi, NamespaceTerminating
from .recovery import RecoverySettings
from .writer import JobWriter

log = logging.getLogger("bert_operator.reconcile")
#: More planning rounds than any job can need (one per stage created in one reconcile, one per
#: suspend toggle or restart delete, one final); reaching it means a plan keeps asking for writes, a bug.
MAX_ROUNDS = 2 * max(4, len(TASKS)) + 2


def _parsed_once(body: dict[str, Any]) -> Callable[[dict[str, Any]], BertTrainingJob]:
    """parse_job for the rounds of one reconcile: `body` does not change between them (writes change the MPIJobs
    observed, not the job), so it is validated once; its verdict, a job or a SpecError, is given to every round
    (the job is never changed in place: planning derives new ones with model_copy)."""
    verdict: list[BertTrainingJob | SpecError] = []

    def parse(document: dict[str, Any]) -> BertTrainingJob:
        if document is not body:
            return parse_job(document)
        if not verdict:
            try:
                verdict.append(parse_job(document))
            except SpecError as exc:
                verdict.append(exc)
        if isinstance(verdict[0], SpecError):
            raise verdict[0]
        return verdict[0]

    return parse


@dataclass(frozen=True)
class Reconciled:
    """What a reconcile (or a recorded report) leaves of a job: its status as this process knows it now, which is
    what it wrote, else the status it planned from (newer than a body a queued watch event carries), and whether it
    wrote it."""

    status: dict[str, Any]
    written: bool


@dataclass
class Reconciler:
    """Drives BertTrainingJobs towards their spec; one instance per operator process."""

    api: MPIJobApi
    events: EventSink
    render_settings: RenderSettings = field(default_factory=RenderSettings)
    recovery: RecoverySettings = field(default_factory=RecoverySettings)
    #: The policies and labels of a namespace (the operator's watch cache); None: no policies apply.
    policies: Callable[[str], PolicyInput | None] = lambda namespace: None
    #: Another job of a namespace by name (the operator's watch cache, else a read), for jobs that take inputs from
    #: other jobs; None: not found.
    jobs: Callable[[str, str], dict[str, Any] | None] = lambda namespace, name: None
    #: The platform's job templates now (templates/catalog.py); none by default.
    templates: Callable[[], Mapping[str, Any]] = lambda: {}
    clock: Callable[[], str] = utc_now
    #: Told (namespace, name, status) after each status write, under the job's lock: the operator's training gauges
    #: follow it (bert_operator.training_metrics); a local run has no gauges.
    status_written: Callable[[str, str, dict[str, Any]], None] = lambda namespace, name, status: None
    #: Re-entrant: a caller may hold a job's lock around reconcile and keeping its result, so that results are kept in
    #: the order the reconciles ran.
    _locks: defaultdict[tuple[str, str], threading.RLock] = field(default_factory=lambda: defaultdict(threading.RLock))
    #: Namespaces being deleted (status.phase Terminating, from the namespace watch or a create's 403): their jobs go
    #: with them, so nothing is written for those jobs any more.
    terminating: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.writer = JobWriter(self.api, self.events, self.status_written)
        #: The MPIJobs each job's last completed plan was made on, by name (as read, or as a write answered).
        self._planned_on: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}

    def lock(self, namespace: str, name: str) -> threading.RLock:
        """Serialise work on one job inside this process (watch events of job and MPIJob may race)."""
        return self._locks[(namespace, name)]

    @staticmethod
    def is_current(body: dict[str, Any]) -> bool:
        """Whether the status already answers the spec: nothing new to do until an MPIJob changes."""
        status = body.get("status") or {}
        return bool(status.get("stages")) and status.get("observedGeneration") == (body.get("metadata") or {}).get("generation")

    def reconcile(self, body: dict[str, Any], observed: dict[str, Any] | None = None) -> Reconciled | None:
        """Bring one job forward; `observed` is an MPIJob the caller already holds. Returns the job's status now and
        whether this wrote it; None when it did not look at the job (an event from before a spec change already
        answered, the watch's echo of what its last plan went on, a namespace being deleted). `body` is not changed."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace", "default"), meta.get("name", "")
        started = time.perf_counter()
        with self.lock(namespace, name):
            try:
                if observed is not None and self._already_planned_on(namespace, name, observed):
                    return None
                return self._sync(body, observed)
            finally:
                elapsed = time.perf_counter() - started
                RECONCILE_SECONDS.observe(elapsed)
                log.debug("reconciled job=%s/%s seconds=%.3f", namespace, name, elapsed)

    def namespace_event(self, kind: str | None, body: dict[str, Any]) -> None:
        """A watch event of a namespace: one being deleted (Terminating, or with a deletionTimestamp) is noted."""
        meta = body.get("metadata") or {}
        name = str(meta.get("name") or "")
        going = (body.get("status") or {}).get("phase") == "Terminating" or bool(meta.get("deletionTimestamp"))
        if going and kind != "DELETED":
            self.terminating.add(name)
        else:
            self.terminating.discard(name)

    def _sync(self, body: dict[str, Any], held: dict[str, Any] | None) -> Reconciled | None:
        namespace = (body.get("metadata") or {}).get("namespace", "default")
        if namespace in self.terminating:
            log.debug("namespace terminating: nothing written job=%s/%s", namespace, (body.get("metadata") or {}).get("name"))
            return None
        try:
            return self._sync_live(body, held)
        except NamespaceTerminating:
            # The job goes with its namespace: not a fault, and no phase to tell anyone (it would read Failed).
            self.terminating.add(namespace)
            log.debug("namespace terminating: create refused, nothing written job=%s/%s", namespace,
                      (body.get("metadata") or {}).get("name"))
            return None

    def _sync_live(self, given: dict[str, Any], held: dict[str, Any] | None) -> Reconciled | None:
        old = self.writer.latest(given)
        if ((given.get("metadata") or {}).get("generation") or 0) < (old.get("observedGeneration") or 0):
            return None  # an event from before a spec change we already answered
        body = {**given, "status": old}  # the job as last written: what observe and plan read (the caller's is left alone)
        if not needs_work(body):
            return Reconciled(old, written=False)
        seen = observe(self.api, body, held, self._policies((body.get("metadata") or {}).get("namespace", "default")),
                       self.jobs, self.templates())
        now = self.clock()
        parse = _parsed_once(body)
        for _ in range(MAX_ROUNDS):
            decided = plan(body, old, seen, now, self.render_settings, self.recovery, parse)
            if not decided.actions:
                written = self.writer.write_status(body, old, decided.status, decided.events)
                meta = body["metadata"]
                self._planned_on[(meta.get("namespace", "default"), meta["name"])] = {
                    mpijob: seen_as for mpijob, seen_as in seen.mpijobs.items() if isinstance(seen_as, dict)}
                return Reconciled(old, written=False) if written is None else Reconciled(written, written=True)
            seen = self.writer.apply(body["metadata"]["name"], decided.actions, seen)
        raise RuntimeError(f"job {body['metadata'].get('name')}: planning did not settle in {MAX_ROUNDS} rounds")

    def echoes_last_plan(self, namespace: str, name: str, mpijob: dict[str, Any]) -> bool:
        """Whether :meth:`reconcile` given `mpijob` would return at once (None), the job's last plan having gone on
        exactly this MPIJob (_already_planned_on), so that a watch handler can answer the event without a thread.
        Never waits: False while a reconcile of the job holds its lock (the event then goes the usual way)."""
        if (namespace, name) not in self._planned_on:
            return False
        lock = self.lock(namespace, name)
        if not lock.acquire(blocking=False):
            return False
        try:
            return self._already_planned_on(namespace, name, mpijob)
        finally:
            lock.release()

    def _already_planned_on(self, namespace: str, name: str, mpijob: dict[str, Any]) -> bool:
        """Whether the job's last plan was made on exactly this MPIJob: the watch's echo of our own create (the
        create's answer is what the plan went on with), or an event repeating what a read saw. Planning again would
        decide the same from it; a change of the job itself comes with the job's own event, or the work queue
        (a restart due, the resync), which read afresh."""
        planned = self._planned_on.get((namespace, name))
        return planned is not None and planned.get(str((mpijob.get("metadata") or {}).get("name"))) == mpijob

    def _policies(self, namespace: str) -> PolicyInput | PoliciesUnreadable | None:
        try:
            return self.policies(namespace)
        # Any failure of the read (the port raises whatever its client raises) must hold new MPIJobs: policies fail
        # closed, so the plan waits visibly instead of creating MPIJobs without them.
        except Exception as exc:  # noqa: BLE001
            log.warning("policies unreadable namespace=%s error=%s", namespace, type(exc).__name__)
            return PoliciesUnreadable(f"{type(exc).__name__}: {exc}"[:300])

    def record(self, body: dict[str, Any], patch: dict[str, Any]) -> Reconciled | None:
        """Write status fields that do not come from planning (a trainer report, a staleness verdict),
        through the same writer; the caller holds the job's lock. Returns the job's status now and whether it was
        written (not when the patch changes nothing); None for a job whose namespace is being deleted."""
        if (body.get("metadata") or {}).get("namespace", "default") in self.terminating:
            return None
        old = self.writer.latest(body)
        written = self.writer.write_status(body, old, {**old, **patch})
        return Reconciled(old, written=False) if written is None else Reconciled(written, written=True)

    def forget(self, namespace: str, name: str) -> None:
        """A job was deleted: drop what this process remembers of it."""
        self.writer.forget(namespace, name)
        self._planned_on.pop((namespace, name), None)

"""Write: the one place that changes the cluster for a job: MPIJob writes, then its status, then its Events.

The reconciler, the progress endpoint, the resync's staleness check and local
mode's report reader all write a job's status through :meth:`JobWriter.write_status`,
so a status is always written the same way: only when it changed, as a merge of
the fields that changed, and with Events posted only once it was written.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

from ..metrics import MPIJOBS_CREATED
from ..status import MAX_EVENT_BYTES, bounded
from .decisions import CreateCleanupJob, CreateInferenceService, DeleteInferenceService, PatchInferenceService
from .observe import NOT_READ, Deleted, Observed, RefusedCreate
from .plan import Action, CreateMPIJob, DeleteMPIJob, Event, PatchMPIJob, PatchWorkload
from .ports import EventSink, MPIJobApi, Rejected

log = logging.getLogger("bert_operator.reconcile")


class JobWriter:
    """Applies a plan's actions and writes status through the cluster API."""

    def __init__(self, api: MPIJobApi, events: EventSink,
                 written: Callable[[str, str, dict[str, Any]], None] = lambda namespace, name, status: None) -> None:
        self.api = api
        self.events = events
        #: Told each status once it is written (the operator's training gauges follow it).
        self.written = written
        #: The status last written for each job by this process, with the uid of the object it was written to.
        #: Only this writer writes status, so it is newer than any body a queued watch event still carries
        #: (see :meth:`latest`); the uid keeps a job re-created under the same name from inheriting it.
        self._written: dict[tuple[str, str], tuple[str | None, dict[str, Any]]] = {}

    @staticmethod
    def _key(body: dict[str, Any]) -> tuple[str, str]:
        meta = body.get("metadata") or {}
        return meta.get("namespace", "default"), meta.get("name", "")

    def latest(self, body: dict[str, Any]) -> dict[str, Any]:
        """The job's status as last written: ours if we wrote one since this process started, else the body's.

        A watch event queued while we were writing carries the status from before our write; deciding from it
        would repeat work already done (a second create, a second Event)."""
        uid, written = self._written.get(self._key(body), (None, None))
        if written is not None and uid == (body.get("metadata") or {}).get("uid"):
            return written
        return body.get("status") or {}

    def forget(self, namespace: str, name: str) -> None:
        """The job was deleted: a job re-created under its name starts from its own status."""
        self._written.pop((namespace, name), None)

    def apply(self, job_name: str, actions: Iterable[Action], observed: Observed) -> Observed:
        """Run MPIJob and Workload writes; `observed` with the API server's answers in place (what to plan on next)."""
        answers: dict[str, dict[str, Any] | RefusedCreate | Deleted] = {}
        workloads: dict[str, dict[str, Any]] = {}
        isvc: Any = NOT_READ
        cleanup: Any = NOT_READ
        for action in actions:
            if isinstance(action, CreateMPIJob):
                meta = action.body["metadata"]
                try:
                    mpijob, created = self.api.create_or_adopt_mpijob(action.body)
                except Rejected as exc:
                    log.warning("mpijob refused job=%s/%s mpijob=%s code=%d message=%s", meta["namespace"], job_name,
                                meta["name"], exc.status, exc.message)
                    answers[meta["name"]] = RefusedCreate(meta["name"], exc.status, exc.message)
                    continue
                if created:
                    MPIJOBS_CREATED.inc()
                    log.info("mpijob created job=%s/%s mpijob=%s", meta["namespace"], job_name, meta["name"])
                else:
                    log.info("mpijob adopted job=%s/%s mpijob=%s", meta["namespace"], job_name, meta["name"])
                answers[meta["name"]] = mpijob
            elif isinstance(action, PatchMPIJob):
                answers[action.name] = self.api.patch_mpijob(action.namespace, action.name, action.patch)
            elif isinstance(action, DeleteMPIJob):
                left = self.api.delete_mpijob(action.namespace, action.name, action.uid)
                log.info("mpijob deleted for a restart job=%s/%s mpijob=%s uid=%s", action.namespace, job_name,
                         action.name, action.uid)
                answers[action.name] = left if left is not None else Deleted(action.mpijob)
            elif isinstance(action, PatchWorkload):
                workloads[action.mpijob] = self.api.patch_workload(action.namespace, action.name, action.patch)
                log.info("workload patched job=%s/%s workload=%s patch=%s", action.namespace, job_name, action.name,
                         action.patch)
            elif isinstance(action, (CreateInferenceService, PatchInferenceService, DeleteInferenceService)):
                isvc = self._serve(job_name, action)
            elif isinstance(action, CreateCleanupJob):
                cleanup = self._cleanup(job_name, action)
            else:  # pragma: no cover - Action is a closed union
                raise TypeError(f"unknown action {action!r}")
        return observed.with_answers(answers, workloads, isvc, cleanup)

    def _cleanup(self, job_name: str, action: CreateCleanupJob) -> dict[str, Any] | RefusedCreate:
        """Create the sweep's cleanup Job (a 409 adopts it); RefusedCreate when the server refuses it."""
        meta = action.body["metadata"]
        try:
            answer, created = self.api.create_batch_job(action.body)
        except Rejected as exc:
            log.warning("cleanup job refused job=%s/%s code=%d message=%s", meta["namespace"], job_name, exc.status,
                        exc.message)
            return RefusedCreate(str(meta["name"]), exc.status, exc.message)
        log.info("cleanup job %s job=%s/%s name=%s", "created" if created else "adopted", meta["namespace"], job_name,
                 meta["name"])
        return answer

    def _serve(self, job_name: str, action: CreateInferenceService | PatchInferenceService | DeleteInferenceService
               ) -> dict[str, Any] | RefusedCreate | None:
        """Write the job's InferenceService; what the server answered (RefusedCreate for a refusal, None once deleted)."""
        if isinstance(action, DeleteInferenceService):
            self.api.delete_inference_service(action.namespace, action.name, action.uid)
            log.info("inference service deleted job=%s/%s", action.namespace, job_name)
            return None
        try:
            if isinstance(action, PatchInferenceService):
                answer = self.api.patch_inference_service(action.namespace, action.name, action.patch)
                log.info("inference service patched job=%s/%s", action.namespace, job_name)
                return answer
            answer, created = self.api.create_inference_service(action.body)
        except Rejected as exc:
            meta = action.body["metadata"] if isinstance(action, CreateInferenceService) else {"name": action.name}
            log.warning("inference service refused job=%s code=%d message=%s", job_name, exc.status, exc.message)
            return RefusedCreate(str(meta["name"]), exc.status, exc.message)
        log.info("inference service %s job=%s/%s", "created" if created else "adopted",
                 action.body["metadata"]["namespace"], job_name)
        return answer

    def write_status(self, body: dict[str, Any], old: dict[str, Any], new: dict[str, Any],
                     events: Iterable[Event] = ()) -> dict[str, Any] | None:
        """Merge the fields of `new` that differ from `old` (null for those it dropped); then post `events`. Returns `new`,
        or None if nothing changed or the job is gone. `body` is only read (its name, and the Events' object): the
        caller keeps what was written."""
        if new == old:
            return None
        meta = body["metadata"]
        namespace = meta.get("namespace", "default")
        patch = {key: value for key, value in new.items() if old.get(key) != value}
        patch.update({key: None for key in old if key not in new})  # a JSON merge patch removes a field with null
        if self.api.patch_job_status(namespace, meta["name"], patch) is None:
            self.forget(namespace, meta["name"])
            return None  # the job was deleted meanwhile
        self._written[(namespace, meta["name"])] = (meta.get("uid"), new)
        self.written(namespace, meta["name"], new)
        for event in events:
            self._post(body, event)
        log.info("status job=%s/%s phase=%s stage=%s", namespace, meta["name"], new.get("phase"), new.get("currentStage"))
        return new

    def _post(self, body: dict[str, Any], event: Event) -> None:
        try:
            self.events.post(body, event.kind, event.reason, bounded(event.message, MAX_EVENT_BYTES))
        except Exception:  # an Event is a courtesy; never fail a reconcile over it
            log.exception("event post failed reason=%s", event.reason)

"""Reconciling one BertTrainingJob: create or adopt its current stage's MPIJob, chain phases, write status.

Idempotent by construction: MPIJob names are deterministic (so a repeated
create is a 409 and the existing MPIJob is adopted), everything the operator
knows lives in the job's status, and status is written only when it changes.
Handlers call :meth:`Reconciler.reconcile` for any event; it never assumes
which event it is answering.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from . import status as sm
from .api import BertTrainingJob, SpecError
from .api.parse import parse_job
from .tasks import stages_of, task_of
from .metrics import MPIJOBS_CREATED, RECONCILE_SECONDS
from .render import RenderSettings, render_mpijob

log = logging.getLogger(__name__)


def utc_now() -> str:
    return datetime.datetime.now(tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class MPIJobApi(Protocol):
    """What the reconciler needs of a cluster: the API server (kube.KubeApi) or local processes (local.LocalStages)."""

    def get_mpijob(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def create_or_adopt_mpijob(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]: ...
    def patch_mpijob(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]: ...
    def patch_job_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any] | None: ...


class EventSink(Protocol):
    """Where Kubernetes Events go (the API server in production, a list in unit tests)."""

    def post(self, body: dict[str, Any], kind: str, reason: str, message: str) -> None: ...


def spec_hash(spec: dict[str, Any]) -> str:
    """Hash of the fields that cannot change once a job started (all but runPolicy.suspend)."""
    frozen = json.loads(json.dumps(spec))
    frozen.get("runPolicy", {}).pop("suspend", None)
    return hashlib.sha256(json.dumps(frozen, sort_keys=True).encode()).hexdigest()[:16]


def normalized_spec(job: BertTrainingJob) -> dict[str, Any]:
    """The spec with every default filled in: what the job runs, comparable across edits."""
    return job.spec.model_dump(by_alias=True, exclude_none=True, mode="json")


def summary(job: BertTrainingJob) -> dict[str, Any]:
    """The columns `kubectl get btj` shows."""
    task = task_of(job.spec).name
    resources = job.spec.resources
    return {
        "task": task,
        "model": job.spec.model.preset,
        "workers": resources.workers,
        "gpus": resources.workers * resources.gpus_per_worker,
    }


@dataclass
class Reconciler:
    """Drives BertTrainingJobs towards their spec; one instance per operator process."""

    api: MPIJobApi
    events: EventSink
    render_settings: RenderSettings = field(default_factory=RenderSettings)
    clock: Callable[[], str] = utc_now
    _locks: defaultdict[tuple[str, str], threading.Lock] = field(default_factory=lambda: defaultdict(threading.Lock))

    def lock(self, namespace: str, name: str) -> threading.Lock:
        """Serialise work on one job inside this process (watch events of job and MPIJob may race)."""
        return self._locks[(namespace, name)]

    # ------------------------------------------------------------------ entry

    @staticmethod
    def is_current(body: dict[str, Any]) -> bool:
        """Whether the status already answers the spec: nothing new to do until an MPIJob changes."""
        status = body.get("status") or {}
        return bool(status.get("stages")) and status.get("observedGeneration") == (body.get("metadata") or {}).get("generation")

    def reconcile(self, body: dict[str, Any], observed: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Bring one job forward; `observed` is an MPIJob the caller already holds. Returns the status written, if any."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace", "default"), meta.get("name", "")
        started = time.perf_counter()
        with self.lock(namespace, name):
            try:
                return self._reconcile(body, observed)
            finally:
                elapsed = time.perf_counter() - started
                RECONCILE_SECONDS.observe(elapsed)
                log.debug("reconciled job=%s/%s seconds=%.3f", namespace, name, elapsed)

    def _reconcile(self, body: dict[str, Any], observed: dict[str, Any] | None) -> dict[str, Any] | None:
        meta = body["metadata"]
        old = body.get("status") or {}
        generation = meta.get("generation")
        if old.get("phase") in sm.TERMINAL_PHASES and old.get("observedGeneration") == generation:
            return None  # finished and nothing new asked of it
        accepted = old.get("acceptedSpec")
        try:
            job = parse_job(body)
        except SpecError as exc:
            if accepted:  # running job, broken update: refuse it, keep running the accepted spec
                return self._refuse_update(body, old, f"spec is invalid: {exc.render()}", accepted, observed)
            return self._invalid(body, old, exc)
        if accepted and spec_hash(accepted) != spec_hash(normalized_spec(job)):
            return self._refuse_update(body, old, "fields other than runPolicy.suspend cannot change after the job started", accepted, observed)
        return self._advance(body, job, old, observed, applied=True)

    # ------------------------------------------------------------- outcomes

    def _invalid(self, body: dict[str, Any], old: dict[str, Any], exc: SpecError) -> dict[str, Any] | None:
        now, generation = self.clock(), body["metadata"].get("generation")
        message = "; ".join(f"{e.path}: {e.message}" for e in exc.errors)
        conditions = sm.set_condition(old.get("conditions") or [], sm.VALID, False, sm.REASON_INVALID_SPEC, message, now, generation)
        conditions = sm.set_condition(conditions, sm.FAILED, True, sm.REASON_INVALID_SPEC, message, now, generation)
        new = {**old, "phase": "Failed", "conditions": conditions, "observedGeneration": generation, "completionTime": now}
        return self._write(body, old, new, event=("Warning", sm.REASON_INVALID_SPEC, message))

    def _refuse_update(
        self, body: dict[str, Any], old: dict[str, Any], why: str, accepted: dict[str, Any], observed: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """Keep running the accepted spec, say why the change was not applied; suspend toggles still pass."""
        accepted_body = {**body, "spec": accepted}
        live_suspend = ((body.get("spec") or {}).get("runPolicy") or {}).get("suspend")
        if isinstance(live_suspend, bool):
            accepted_body["spec"] = {**accepted, "runPolicy": {**accepted.get("runPolicy", {}), "suspend": live_suspend}}
        job = parse_job(accepted_body)
        return self._advance(body, job, old, observed, applied=False, refusal=why)

    def _advance(
        self,
        body: dict[str, Any],
        job: BertTrainingJob,
        old: dict[str, Any],
        observed: dict[str, Any] | None,
        *,
        applied: bool,
        refusal: str = "",
    ) -> dict[str, Any] | None:
        meta = body["metadata"]
        namespace, generation = job.metadata.namespace, meta.get("generation")
        now = self.clock()
        stages = stages_of(job.spec)
        recorded = {s.get("name"): s for s in old.get("stages") or []}
        stage_entries: list[dict[str, Any]] = []
        phases: list[sm.StagePhase] = []
        conflict = ""
        for stage in stages:
            mpijob_name = stage.mpijob_name(job.metadata.name)
            entry = dict(recorded.get(stage.name) or {"name": stage.name})
            if entry.get("phase") == "Succeeded":
                phases.append(sm.StagePhase("Succeeded", "Succeeded", ""))
                stage_entries.append(entry)
                continue
            if observed is not None and observed["metadata"]["name"] == mpijob_name:
                mpijob = observed
            elif "mpiJob" not in entry:
                mpijob = None  # never created by us: create straight away; a 409 adopts an existing one
            else:
                mpijob = self.api.get_mpijob(namespace, mpijob_name)
            if mpijob is None:
                mpijob, created = self.api.create_or_adopt_mpijob(render_mpijob(job, stage, self.render_settings))
                if created:
                    MPIJOBS_CREATED.inc()
                    log.info("mpijob created job=%s/%s mpijob=%s", namespace, job.metadata.name, mpijob_name)
                    entry.setdefault("startTime", now)
            if not self._owned(mpijob, meta.get("uid")):
                conflict = f"MPIJob {mpijob_name} exists and is not owned by this BertTrainingJob"
                phases.append(sm.StagePhase("Failed", sm.REASON_NAME_CONFLICT, conflict))
                stage_entries.append(entry)
                break
            self._sync_suspend(job, mpijob)
            phase = sm.stage_phase(mpijob)
            mpi_status = mpijob.get("status") or {}
            entry.update({"name": stage.name, "mpiJob": mpijob_name, "phase": phase.phase})
            entry.setdefault("startTime", mpi_status.get("startTime") or now)
            if phase.phase in sm.TERMINAL_PHASES:
                entry.setdefault("completionTime", mpi_status.get("completionTime") or now)
            phases.append(phase)
            stage_entries.append(entry)
            if phase.phase != "Succeeded":
                break
        phases += [sm.StagePhase("Pending", "NotCreated", "")] * (len(stages) - len(phases))

        state = sm.job_state(phases)
        conditions = sm.phase_conditions(old.get("conditions") or [], state, now, generation)
        if applied:
            conditions = sm.set_condition(conditions, sm.SPEC_APPLIED, True, sm.REASON_APPLIED, "spec applied", now, generation)
        else:
            conditions = sm.set_condition(conditions, sm.SPEC_APPLIED, False, sm.REASON_IMMUTABLE, refusal, now, generation)
        current = stages[state.stage_index].name
        new = {
            **old,
            **summary(job),
            "phase": state.phase,
            "currentStage": current,
            "stages": stage_entries,
            "conditions": conditions,
            "observedGeneration": generation,
            "acceptedSpec": old.get("acceptedSpec") or normalized_spec(job),
        }
        new.setdefault("startTime", now)
        if state.phase in sm.TERMINAL_PHASES:
            new.setdefault("completionTime", now)
            if state.phase == "Succeeded" and new.get("progress"):
                new["progress"] = {**new["progress"], "percent": 100, "display": "100%"}
        event = sm.event_for_transition(old.get("phase"), state.phase, current, conflict or state.message)
        if not applied and sm.condition_of(old, sm.SPEC_APPLIED) != sm.condition_of(new, sm.SPEC_APPLIED):
            previous = sm.condition_of(old, sm.SPEC_APPLIED) or {}
            if previous.get("message") != refusal:
                self._post(body, "Warning", sm.REASON_IMMUTABLE, f"update not applied: {refusal}")
        return self._write(body, old, new, event=event)

    # -------------------------------------------------------------- helpers

    @staticmethod
    def _owned(mpijob: dict[str, Any], uid: str | None) -> bool:
        owners = (mpijob.get("metadata") or {}).get("ownerReferences") or []
        return uid is None or any(o.get("uid") == uid for o in owners)

    def _sync_suspend(self, job: BertTrainingJob, mpijob: dict[str, Any]) -> None:
        """Pass runPolicy.suspend toggles to the running stage's MPIJob."""
        if sm.stage_phase(mpijob).phase in sm.TERMINAL_PHASES:
            return
        want = job.spec.run_policy.suspend
        have = bool(((mpijob.get("spec") or {}).get("runPolicy") or {}).get("suspend", False))
        if want != have:
            meta = mpijob["metadata"]
            updated = self.api.patch_mpijob(meta["namespace"], meta["name"], {"spec": {"runPolicy": {"suspend": want}}})
            mpijob.clear()
            mpijob.update(updated)

    def _post(self, body: dict[str, Any], kind: str, reason: str, message: str) -> None:
        try:
            self.events.post(body, kind, reason, message)
        except Exception:  # an Event is a courtesy; never fail a reconcile over it
            log.exception("event post failed reason=%s", reason)

    def _write(
        self, body: dict[str, Any], old: dict[str, Any], new: dict[str, Any], event: tuple[str, str, str] | None
    ) -> dict[str, Any] | None:
        if new == old:
            return None
        meta = body["metadata"]
        patch = {key: value for key, value in new.items() if old.get(key) != value}
        written = self.api.patch_job_status(meta.get("namespace", "default"), meta["name"], patch)
        if written is None:
            return None  # the job was deleted meanwhile
        body["status"] = new
        if event:
            self._post(body, *event)
        log.info("status job=%s/%s phase=%s stage=%s", meta.get("namespace"), meta["name"], new.get("phase"), new.get("currentStage"))
        return new


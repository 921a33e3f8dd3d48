"""The recording fakes the reconciler tests run against, and the jobs they start from.

FakeCluster plays the API server (MPIJobs, one job's status, pods, Warning Events, Kueue's Workloads) and the Event
sink, recording every call as (verb, resource, name) in the style of the MPI Operator controller's tests;
KueueCluster adds Kueue's MPIJob webhook and controller. The fixtures that hand them out are in conftest.py.
"""

from __future__ import annotations

import copy
from typing import Any

from bert_operator.kueue import KueueNotInstalled
from bert_operator.reconcile import Reconciled, Reconciler
from bert_operator.reconcile.ports import NamespaceTerminating, ReadFailed, Rejected

NOW = "2026-12-01T10:00:00Z"
UID = "uid-of-the-job"
GLUE = {"task": {"glue": {}}, "model": {"vocab": "s3://models/vocab.txt", "initCheckpoint": "s3://models/bert"},
        "dataset": {"uri": "s3://data/glue"}, "output": {"uri": "s3://results/glue"}}
PRETRAIN = {"task": {"pretrain": {}}, "dataset": {"uri": "s3://data/wiki"}, "output": {"uri": "s3://results/bert"}}
QUEUED_GLUE = {**GLUE, "queueName": "team-a"}


class FakeCluster:
    """MPIJobs and one job's status as an API server holds them; every call recorded as (verb, resource, name)."""

    def __init__(self) -> None:
        self.mpijobs: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.status_patches: list[dict[str, Any]] = []
        self.events: list[tuple[str, str, str]] = []
        self.job_exists = True
        self.fail_events = False
        #: MPIJob names whose create the API server refuses (422), with its message.
        self.refuse: dict[str, str] = {}
        #: Warning Events of the namespace, as the MPI Operator and the scheduler post them.
        self.warnings: list[dict[str, Any]] | None = []
        #: Pods of the namespace (what a label-selected list of a stage's pods answers from).
        self.pods: list[dict[str, Any]] = []
        #: Kueue Workloads by name, as Kueue makes them (labelled with their MPIJob's uid).
        self.workloads: dict[str, dict[str, Any]] = {}
        #: Whether a delete leaves the MPIJob in place with a deletionTimestamp (foreground: its pods go first).
        self.foreground = True
        #: Whether the namespace is being deleted (creates answer 403 NamespaceTerminating).
        self.terminating = False
        #: Whether the API server serves Kueue's Workloads.
        self.kueue_installed = True
        #: KServe's InferenceServices by name; whether their API is served; a message the server refuses them with.
        self.isvcs: dict[str, dict[str, Any]] = {}
        self.kserve_installed = True
        self.refuse_isvc: str | None = None
        #: batch/v1 Jobs by name (a sweep's cleanup); a message the server refuses them with.
        self.batch_jobs: dict[str, dict[str, Any]] = {}
        self.refuse_batch_job: str | None = None
        self._uids = 0

    # MPIJobApi
    def get_mpijob(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get", "mpijobs", name))
        return copy.deepcopy(self.mpijobs.get(name))

    def create_or_adopt_mpijob(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """As kube.KubeApi: a create, and on 409 the existing object (the read is part of the same call)."""
        name = body["metadata"]["name"]
        self.calls.append(("create", "mpijobs", name))
        if name in self.refuse:
            raise Rejected(422, self.refuse[name])
        if self.terminating:
            raise NamespaceTerminating(namespace=body["metadata"]["namespace"])
        if name in self.mpijobs:
            return copy.deepcopy(self.mpijobs[name]), False
        self._uids += 1
        created = copy.deepcopy(body)
        created["metadata"]["uid"] = f"mpijob-uid-{self._uids}"
        self.mpijobs[name] = created
        return copy.deepcopy(created), True

    def patch_mpijob(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("patch", "mpijobs", name))
        target = self.mpijobs[name]
        target["spec"]["runPolicy"] = {**target["spec"].get("runPolicy", {}), **patch["spec"]["runPolicy"]}
        return copy.deepcopy(target)

    def delete_mpijob(self, namespace: str, name: str, uid: str) -> dict[str, Any] | None:
        self.calls.append(("delete", "mpijobs", name))
        target = self.mpijobs.get(name)
        if target is None or target["metadata"]["uid"] != uid:
            return None
        if not self.foreground:
            del self.mpijobs[name]
            return None
        target["metadata"]["deletionTimestamp"] = NOW
        return copy.deepcopy(target)

    def list_stage_pods(self, namespace: str, job: str, stage: str) -> list[dict[str, Any]]:
        self.calls.append(("list", "pods", f"{job}/{stage}"))
        return [copy.deepcopy(p) for p in self.pods if p["metadata"].get("labels") == {
            "bertoperator.io/job-name": job, "bertoperator.io/stage": stage}]

    def find_workload(self, namespace: str, mpijob_uid: str) -> dict[str, Any] | None:
        self.calls.append(("list", "workloads", mpijob_uid))
        if not self.kueue_installed:
            raise KueueNotInstalled()
        found = [w for w in self.workloads.values() if w["metadata"]["labels"]["kueue.x-k8s.io/job-uid"] == mpijob_uid]
        return copy.deepcopy(found[0]) if found else None

    def patch_workload(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("patch", "workloads", name))
        self.workloads[name]["spec"].update(patch["spec"])
        return copy.deepcopy(self.workloads[name])

    def patch_job_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any] | None:
        self.calls.append(("patch", "status", name))
        self.status_patches.append(status)
        return {"status": status} if self.job_exists else None

    def list_warning_events(self, namespace: str) -> list[dict[str, Any]]:
        self.calls.append(("list", "events", namespace))
        if self.warnings is None:
            raise ReadFailed("Warning Events of ml: ApiException: (403) events is forbidden")  # an install without the RBAC
        return copy.deepcopy(self.warnings)

    def get_inference_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get", "inferenceservices", name))
        return copy.deepcopy(self.isvcs.get(name))

    def create_inference_service(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        name = body["metadata"]["name"]
        self.calls.append(("create", "inferenceservices", name))
        if not self.kserve_installed:
            raise Rejected(404, "the InferenceService API (serving.kserve.io/v1beta1) is not served")
        if self.refuse_isvc:
            raise Rejected(422, self.refuse_isvc)
        return self._made_once(self.isvcs, body, "isvc")

    def _made_once(self, made: dict[str, dict[str, Any]], body: dict[str, Any], kind: str) -> tuple[dict[str, Any], bool]:
        """A create of an object a job makes once: the one of that name that exists (a 409 adopted), or `body` with a
        uid, kept in `made`."""
        name = body["metadata"]["name"]
        if name in made:
            return copy.deepcopy(made[name]), False
        self._uids += 1
        created = copy.deepcopy(body)
        created["metadata"]["uid"] = f"{kind}-uid-{self._uids}"
        made[name] = created
        return copy.deepcopy(created), True

    def patch_inference_service(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        from tests.operator.strict import merge_patch

        self.calls.append(("patch", "inferenceservices", name))
        self.isvcs[name] = merge_patch(self.isvcs[name], patch)
        return copy.deepcopy(self.isvcs[name])

    def delete_inference_service(self, namespace: str, name: str, uid: str) -> None:
        self.calls.append(("delete", "inferenceservices", name))
        if name in self.isvcs and self.isvcs[name]["metadata"]["uid"] == uid:
            del self.isvcs[name]

    def set_isvc_conditions(self, name: str, url: str | None = None, **conditions: str) -> None:
        """KServe's controller on an InferenceService: its conditions (type -> True/False) and its URL."""
        status: dict[str, Any] = {"conditions": [
            {"type": kind, "status": value, **({} if value == "True" else {"reason": f"{kind}Failed",
                                                                             "message": f"{kind} is {value}"})}
            for kind, value in conditions.items()]}
        if url:
            status["url"] = url
        self.isvcs[name]["status"] = status

    def get_batch_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get", "jobs", name))
        return copy.deepcopy(self.batch_jobs.get(name))

    def create_batch_job(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        name = body["metadata"]["name"]
        self.calls.append(("create", "jobs", name))
        if self.refuse_batch_job:
            raise Rejected(403, self.refuse_batch_job)
        return self._made_once(self.batch_jobs, body, "job")

    def end_batch_job(self, name: str, kind: str, reason: str = "", message: str = "") -> None:
        """The Job controller's terminal condition on a Job: Complete, or Failed with its reason."""
        condition = {"type": kind, "status": "True", **({"reason": reason, "message": message} if reason else {})}
        self.batch_jobs[name]["status"] = {"conditions": [condition], ("succeeded" if kind == "Complete" else "failed"): 1}

    # EventSink
    def post(self, body: dict[str, Any], kind: str, reason: str, message: str) -> None:
        if self.fail_events:
            raise ConnectionError("events API down")
        self.events.append((kind, reason, message))

    # setting up the world
    def set_conditions(self, name: str, *true: str, **status: Any) -> None:
        """The MPI Operator's conditions on an MPIJob: the types given are True, in order."""
        self.mpijobs[name].setdefault("status", {})["conditions"] = [
            {"type": kind, "status": "True", "reason": f"MPIJob{kind}", "message": f"MPIJob {kind.lower()}"}
            for kind in true]
        self.mpijobs[name]["status"].update(status)


class KueueCluster(FakeCluster):
    """The fake API server with Kueue's MPIJob webhook: a new MPIJob labelled with a queue is created suspended."""

    def create_or_adopt_mpijob(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        if "kueue.x-k8s.io/queue-name" in body["metadata"].get("labels", {}):
            body = copy.deepcopy(body)
            body["spec"].setdefault("runPolicy", {})["suspend"] = True
        return super().create_or_adopt_mpijob(body)

    def add_workload(self, mpijob: str, *conditions: dict[str, Any], active: bool = True) -> dict[str, Any]:
        uid = self.mpijobs[mpijob]["metadata"]["uid"]
        workload = {"metadata": {"name": f"mpijob-{mpijob}-3f2a1", "namespace": "ml",
                                 "labels": {"kueue.x-k8s.io/job-uid": uid}},
                    "spec": {"active": active, "queueName": "team-a"}, "status": {"conditions": list(conditions)}}
        self.workloads[workload["metadata"]["name"]] = workload
        return workload

    def admit(self, mpijob: str) -> None:
        """Kueue admits the Workload and clears suspend; the MPI Operator starts the MPIJob."""
        for workload in self.workloads.values():
            workload["status"]["conditions"] = [
                wl_condition("QuotaReserved", "True", "QuotaReserved", "Quota reserved in ClusterQueue gpus"),
                                                wl_condition("Admitted", "True", "Admitted", "The workload is admitted")]
        self.mpijobs[mpijob]["spec"]["runPolicy"]["suspend"] = False
        self.set_conditions(mpijob, "Created", "Running")

    def preempt(self, mpijob: str) -> None:
        """Kueue evicts the Workload to make room for a higher priority one and sets suspend again."""
        for workload in self.workloads.values():
            workload["status"]["conditions"] = [
                wl_condition("QuotaReserved", "False", "Pending",
                             "Preempted to accommodate a workload (UID: 77) in the ClusterQueue"),
                wl_condition("Admitted", "False", "NoReservation", "The workload has no reservation"),
                wl_condition("Evicted", "True", "Preempted", "Preempted to accommodate a workload (UID: 77) in the ClusterQueue")]
        self.mpijobs[mpijob]["spec"]["runPolicy"]["suspend"] = True
        self.set_conditions(mpijob, "Created", "Suspended")


def wl_condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": NOW}


class Clock:
    """The reconciler's clock, set by the test (`clock.now = LATER`)."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> str:
        return self.now


def job(spec: dict[str, Any], *, generation: int = 1, status: dict[str, Any] | None = None, name: str = "j") -> dict[str, Any]:
    return {"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingJob",
            "metadata": {"name": name, "namespace": "ml", "uid": UID, "generation": generation},
            "spec": copy.deepcopy(spec), **({"status": copy.deepcopy(status)} if status is not None else {})}


def kept(body: dict[str, Any], result: Reconciled | None) -> dict[str, Any] | None:
    """What the caller of a reconcile does with its result (as Runtime.keep and local mode's run do): keep the
    status it returns with the job it holds, here `body` itself. Returns the status written, None if nothing was."""
    if result is None:
        return None
    body["status"] = result.status
    return result.status if result.written else None


def sync(reconciler: Reconciler, body: dict[str, Any], observed: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """One reconcile of the job the test holds in `body`, its result kept there: the status written, or None."""
    return kept(body, reconciler.reconcile(body, observed))


def record(reconciler: Reconciler, body: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any] | None:
    """A report's fields recorded for the job the test holds in `body`, the result kept there: as :func:`sync`."""
    return kept(body, reconciler.record(body, patch))


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    """The condition of type `kind` in a status (or a status' conditions missing): {} when there is none, so a wait
    can read `.get("reason")` of a condition not written yet, and an assertion on one of its fields fails."""
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def pod(name: str, stage: str = "glue", **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ml",
                         "labels": {"bertoperator.io/job-name": "j", "bertoperator.io/stage": stage}},
            "status": status}


EVICTED_WORKER = pod("j-glue-worker-1", phase="Failed", reason="Evicted",
                     message="The node was low on resource: ephemeral-storage.")

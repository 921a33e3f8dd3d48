"""The real operator process on an emulated shared cluster: Kueue's queue (tests/operator/kueue_shim.py) and
automatic recovery of stages failed by the infrastructure, through the strict API layer."""

from __future__ import annotations

import copy
import time
from typing import Any, Iterator

import kubernetes
import pytest
import yaml

from tests.conftest import REPO
from tests.operator.cluster import EmulatedCluster, OperatorProcess
from tests.operator.fakes import condition

SQUAD = yaml.safe_load((REPO / "examples" / "squad-v1.1.yaml").read_text())
NS = "shared"
NO_QUOTA = "couldn't assign flavors to pod set worker: insufficient quota for nvidia.com/gpu in flavor a100, 4 more needed"


def named(name: str, **spec: Any) -> dict[str, Any]:
    document = copy.deepcopy(SQUAD)
    document["metadata"] = {"name": name, "namespace": NS}
    document["spec"].update(spec)
    return document


EMULATED = {"kueue": NS}  # `cluster` (conftest.py): the strict emulator with Kueue in NS


@pytest.fixture(scope="module")
def operator(emulated: EmulatedCluster) -> Iterator[OperatorProcess]:
    process = OperatorProcess(emulated, "--restart-backoff-seconds", "0.5", resync_seconds=1.0).start()
    yield process
    process.stop()


def status(cluster: EmulatedCluster, name: str) -> dict[str, Any]:
    return cluster.job(NS, name).get("status") or {}


def mpijob(cluster: EmulatedCluster, name: str) -> dict[str, Any] | None:
    return next((m for m in cluster.mpijobs(NS) if m["metadata"]["name"] == name), None)


def events_for(cluster: EmulatedCluster, name: str) -> list[tuple[str, str, str]]:
    return [(e["type"], e["reason"], e["message"]) for e in cluster.events() if e["involved_object"]["name"] == name]


def operator_writes(cluster: EmulatedCluster, method: str, plural: str, name: str) -> int:
    if method == "DELETE":  # answered by the strict layer itself (foreground deletion)
        return sum(1 for agent, n, policy in cluster.strict.deletes
                   if agent.startswith("bert-operator/") and n == name and policy == "Foreground")
    return sum(1 for m, p, watch, agent, n, _ in cluster.requests()
               if m == method and p == plural and not watch and agent.startswith("bert-operator/") and n == name)


def test_a_queued_job_waits_for_kueue_runs_when_admitted_and_survives_a_preemption(
        cluster: EmulatedCluster, operator: OperatorProcess) -> None:
    cluster.apply_job(named("queued-1", queueName="team-a"), uid="uid-queued-1")
    created = cluster.wait(lambda: mpijob(cluster, "queued-1-squad"), what="MPIJob")
    assert created["spec"]["runPolicy"]["suspend"] is True  # Kueue's webhook (and the renderer) made it suspended
    cluster.wait(lambda: condition(status(cluster, "queued-1"), "Queued").get("reason") == "WaitingForWorkload",
                 what="no Workload yet")
    assert status(cluster, "queued-1")["phase"] == "Queued"

    cluster.kueue.pending("queued-1-squad", NO_QUOTA)
    queued = cluster.wait(
        lambda: (c := condition(status(cluster, "queued-1"), "Queued")).get("reason") == "WaitingForQuota" and c,
        what="the Workload's reason")
    assert queued["status"] == "True" and queued["message"] == f"Workload mpijob-queued-1-squad-7c1e2: Pending: {NO_QUOTA}"
    assert condition(status(cluster, "queued-1"), "Ready")["reason"] == "WaitingForQuota"
    cluster.wait_syncs("queued-1-squad", 3)  # three syncs (resyncs, 1 s apart)
    assert operator_writes(cluster, "PATCH", "mpijobs", "queued-1-squad") == 0
    assert mpijob(cluster, "queued-1-squad")["spec"]["runPolicy"]["suspend"] is True

    cluster.kueue.admit("queued-1-squad")
    cluster.wait(lambda: status(cluster, "queued-1").get("phase") == "Running", what="Running after admission")
    assert condition(status(cluster, "queued-1"), "Queued")["status"] == "False"

    cluster.kueue.preempt("queued-1-squad")
    evicted = cluster.wait(lambda: (c := condition(status(cluster, "queued-1"), "Queued")).get("reason") == "Evicted" and c,
                           what="Queued after a preemption")
    assert "Preempted: Preempted to accommodate a workload" in evicted["message"]
    cluster.wait(lambda: any(kind == "Warning" and reason == "Queued" for kind, reason, _ in events_for(cluster, "queued-1")),
                 what="the preemption's Warning Event")
    cluster.kueue.admit("queued-1-squad")
    cluster.wait(lambda: status(cluster, "queued-1").get("phase") == "Running", what="Running after re-admission")
    final = status(cluster, "queued-1")
    assert "restarts" not in final["stages"][0]  # a preemption is not a failure: same MPIJob, resumed
    assert operator_writes(cluster, "PATCH", "mpijobs", "queued-1-squad") == 0
    assert operator_writes(cluster, "DELETE", "mpijobs", "queued-1-squad") == 0


def test_suspending_a_queued_job_deactivates_its_workload(cluster: EmulatedCluster, operator: OperatorProcess) -> None:
    cluster.apply_job(named("queued-2", queueName="team-a"), uid="uid-queued-2")
    cluster.wait(lambda: mpijob(cluster, "queued-2-squad"), what="MPIJob")
    cluster.kueue.pending("queued-2-squad", NO_QUOTA)
    cluster.kueue.admit("queued-2-squad")
    cluster.wait(lambda: status(cluster, "queued-2").get("phase") == "Running", what="Running")
    cluster.custom.patch_namespaced_custom_object("bertoperator.io", "v1alpha1", NS, "berttrainingjobs", "queued-2",
                                                  {"spec": {"runPolicy": {"suspend": True}}})
    cluster.wait(lambda: cluster.kueue.workload("queued-2-squad")["spec"]["active"] is False, what="inactive Workload")
    assert operator_writes(cluster, "PATCH", "mpijobs", "queued-2-squad") == 0


def pod(cluster: EmulatedCluster, name: str, stage: str, job: str, status: dict[str, Any]) -> None:
    core = kubernetes.client.CoreV1Api(cluster.client)
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": {
        "bertoperator.io/job-name": job, "bertoperator.io/stage": stage}}, "spec": {"containers": []}, "status": status}
    core.create_namespaced_pod(NS, body, _preload_content=False)


def fail(cluster: EmulatedCluster, name: str, reason: str, message: str) -> None:
    """The MPI Operator's conditions on a failed MPIJob."""
    conditions = [{"type": "Created", "status": "True", "reason": "MPIJobCreated", "message": "created"},
                  {"type": "Running", "status": "False", "reason": "MPIJobRunning", "message": "running"},
                  {"type": "Failed", "status": "True", "reason": reason, "message": message}]
    cluster.custom.patch_namespaced_custom_object_status("kubeflow.org", "v2beta1", NS, "mpijobs", name,
                                                         {"status": {"conditions": conditions}})


def test_an_evicted_worker_restarts_the_stage_until_the_limit(cluster: EmulatedCluster, operator: OperatorProcess) -> None:
    cluster.apply_job(named("evict-1", runPolicy={"maxRestarts": 1}), uid="uid-evict-1")
    first = cluster.wait(lambda: mpijob(cluster, "evict-1-squad"), what="MPIJob")
    cluster.set_mpijob_conditions(NS, "evict-1-squad", "Created", "Running")
    cluster.wait(lambda: status(cluster, "evict-1").get("phase") == "Running", what="Running")
    pod(cluster, "evict-1-squad-worker-0", "squad", "evict-1",
        {"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."})
    fail(cluster, "evict-1-squad", "MPIJobEvicted", "1/1 workers are evicted")

    second = cluster.wait(lambda: (m := mpijob(cluster, "evict-1-squad")) and m["metadata"]["uid"] != first["metadata"]["uid"]
                          and m, timeout=30, what="the stage's MPIJob created again")
    assert "deletionTimestamp" not in second["metadata"]
    stage = cluster.wait(lambda: (s := status(cluster, "evict-1")["stages"][0]).get("phase") != "Restarting" and s,
                         what="the restarted stage followed")
    assert stage["restarts"] == 1 and stage["restartedMpiJobUid"] == first["metadata"]["uid"]
    assert stage["lastRestartReason"] == "Evicted: pod evict-1-squad-worker-0: Evicted: The node was low on resource: memory."
    [(kind, message)] = [(k, m) for k, r, m in events_for(cluster, "evict-1") if r == "StageRestarted"]
    assert kind == "Warning" and message.startswith("squad: restart 1 of 1 (not before ")
    assert operator_writes(cluster, "DELETE", "mpijobs", "evict-1-squad") == 1

    # The garbage collector took the old pods; the new MPIJob's worker is evicted too: no restart is left.
    kubernetes.client.CoreV1Api(cluster.client).delete_namespaced_pod("evict-1-squad-worker-0", NS)
    pod(cluster, "evict-1-squad-worker-0", "squad", "evict-1", {"phase": "Failed", "conditions": [
        {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
         "message": "Preempted in order to admit critical pod"}]})
    fail(cluster, "evict-1-squad", "MPIJobFailed", "MPIJob shared/evict-1-squad has failed")
    failed = cluster.wait(lambda: (c := condition(status(cluster, "evict-1"), "Failed")).get("status") == "True" and c,
                          what="RestartLimitExceeded")
    assert failed["reason"] == "RestartLimitExceeded" and "PreemptionByScheduler" in failed["message"]
    assert mpijob(cluster, "evict-1-squad") is not None  # kept for inspection


def test_a_trainer_exit_2_fails_the_job_at_once_with_its_error_line(cluster: EmulatedCluster, operator: OperatorProcess) -> None:
    cluster.apply_job(named("badinput-1"), uid="uid-badinput-1")
    cluster.wait(lambda: mpijob(cluster, "badinput-1-squad"), what="MPIJob")
    line = "[1,0]<stderr>:python -m bert_trainer squad: error: --train_file: s3://squad/train-v1.1.json: no such object"
    pod(cluster, "badinput-1-squad-launcher-q8v5d", "squad", "badinput-1", {"phase": "Failed", "containerStatuses": [
        {"name": "launcher", "state": {"terminated": {"exitCode": 2, "reason": "Error", "finishedAt": "2026-12-01T10:00:00Z",
                                                      "message": f"{line}\nmpirun detected that one or more processes exited\n"}}}]})
    fail(cluster, "badinput-1-squad", "MPIJobFailed", "MPIJob shared/badinput-1-squad has failed")
    failed = cluster.wait(lambda: (c := condition(status(cluster, "badinput-1"), "Failed")).get("status") == "True" and c,
                          what="Failed")
    assert (failed["reason"], failed["message"]) == ("InvalidInput", line)
    time.sleep(1.5)  # a resync: still not retried
    assert operator_writes(cluster, "DELETE", "mpijobs", "badinput-1-squad") == 0
    assert "restarts" not in status(cluster, "badinput-1")["stages"][0]

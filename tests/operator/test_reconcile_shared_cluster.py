"""The reconciler on a shared cluster, against the recording fake: Kueue's queue and automatic recovery.

Same style as test_reconcile.py (each sync's exact API calls, status and Events). Kueue is played by the
fake: its webhook suspends every new MPIJob that carries the queue-name label, its Workloads are added by the
cases, admission and preemption are the patches Kueue's controller makes. Failures are the MPI Operator's
conditions and the pods' status as the kubelet, the scheduler and the eviction API leave them.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bert_operator.reconcile import Reconciler
from bert_operator.reconcile.failures import classify, error_line
from bert_operator.reconcile.recovery import RecoverySettings
from tests.operator.fakes import (EVICTED_WORKER, GLUE, NOW, PRETRAIN, QUEUED_GLUE, UID, Clock, FakeCluster,
                                  KueueCluster, condition, job, pod, sync, wl_condition)

FAKE = KueueCluster  # the `cluster` fixture's (conftest.py)

LATER = "2026-12-01T10:00:30Z"  # past the first restart's backoff (10 s), before the second's (20 s)


@pytest.fixture()
def reconciler(cluster: KueueCluster, clock: Clock) -> Reconciler:
    return Reconciler(api=cluster, events=cluster, clock=clock, recovery=RecoverySettings(backoff_seconds=10.0))


def fresh(reconciler: Reconciler, cluster: FakeCluster, spec: dict[str, Any]) -> dict[str, Any]:
    body = job(spec)
    sync(reconciler, body)
    cluster.calls.clear()
    cluster.events.clear()
    return body


def admitted(reconciler: Reconciler, cluster: KueueCluster) -> dict[str, Any]:
    """A queued GLUE job whose Workload Kueue admitted, running; calls and Events so far forgotten."""
    body = fresh(reconciler, cluster, QUEUED_GLUE)
    cluster.add_workload("j-glue")
    cluster.admit("j-glue")
    sync(reconciler, body)
    cluster.calls.clear()
    cluster.events.clear()
    return body


def suspend_writes(cluster: FakeCluster) -> list[tuple[str, str, str]]:
    return [call for call in cluster.calls if call[:2] == ("patch", "mpijobs")]


# ----------------------------------------------------------------------- Kueue


def test_a_queued_stage_is_queued_without_a_workload_and_the_operator_never_writes_suspend(
        reconciler: Reconciler, cluster: KueueCluster) -> None:
    body = job(QUEUED_GLUE)
    sync(reconciler, body)
    assert cluster.mpijobs["j-glue"]["spec"]["runPolicy"]["suspend"] is True
    # Kueue cannot have made a Workload yet: the answer to the create is planned on, with no read.
    assert cluster.calls == [("create", "mpijobs", "j-glue"), ("patch", "status", "j")]
    status = body["status"]
    assert status["phase"] == "Queued" and status["stages"][0]["phase"] == "Queued"
    queued = condition(status, "Queued")
    assert (queued["status"], queued["reason"]) == ("True", "WaitingForWorkload")
    assert "waits for Kueue (LocalQueue team-a)" in queued["message"]
    assert condition(status, "Ready")["reason"] == "WaitingForWorkload"
    assert cluster.events == [("Normal", "Queued", f"glue: New -> Queued: {queued['message']}")]
    for _ in range(3):  # three resyncs: reads only, never a suspend write
        cluster.calls.clear()
        sync(reconciler, body)
        assert cluster.calls == [("get", "mpijobs", "j-glue"), ("list", "workloads", "mpijob-uid-1")]
    assert suspend_writes(cluster) == [] and cluster.mpijobs["j-glue"]["spec"]["runPolicy"]["suspend"] is True


def test_the_queued_reason_comes_from_the_workloads_conditions(reconciler: Reconciler, cluster: KueueCluster) -> None:
    body = fresh(reconciler, cluster, QUEUED_GLUE)
    cluster.set_conditions("j-glue", "Created", "Suspended")  # the MPI Operator's view of a suspended MPIJob
    cluster.add_workload("j-glue", wl_condition(
        "QuotaReserved", "False", "Pending",
        "couldn't assign flavors to pod set worker: insufficient quota for nvidia.com/gpu in flavor a100, 24 more needed"))
    sync(reconciler, body)
    assert cluster.calls == [("get", "mpijobs", "j-glue"), ("list", "workloads", "mpijob-uid-1"), ("patch", "status", "j")]
    queued = condition(body["status"], "Queued")
    assert queued["reason"] == "WaitingForQuota" and queued["message"] == (
        "Workload mpijob-j-glue-3f2a1: Pending: couldn't assign flavors to pod set worker: insufficient quota for "
        "nvidia.com/gpu in flavor a100, 24 more needed")
    assert condition(body["status"], "Ready") == {**condition(body["status"], "Ready"), "status": "False",
                                                  "reason": "WaitingForQuota", "message": queued["message"]}
    assert "Suspended" not in {c["type"] for c in body["status"]["conditions"]}  # Kueue's hold is not the user's suspend

    cluster.workloads["mpijob-j-glue-3f2a1"]["status"]["conditions"] = [
        wl_condition("QuotaReserved", "True", "QuotaReserved", "Quota reserved in ClusterQueue gpus"),
        wl_condition("Admitted", "False", "AdmissionChecksPending", "waiting for provisioning request")]
    sync(reconciler, body)
    assert condition(body["status"], "Queued")["reason"] == "WaitingForAdmissionChecks"


def test_admission_runs_the_stage_and_turns_queued_off(reconciler: Reconciler, cluster: KueueCluster) -> None:
    body = fresh(reconciler, cluster, QUEUED_GLUE)
    cluster.add_workload("j-glue")
    cluster.admit("j-glue")
    sync(reconciler, body)
    assert cluster.calls == [("get", "mpijobs", "j-glue"), ("patch", "status", "j")]  # running: no Workload read
    assert body["status"]["phase"] == "Running" and condition(body["status"], "Ready")["status"] == "True"
    assert condition(body["status"], "Queued")["status"] == "False"
    assert cluster.events == [("Normal", "Running", "glue: Queued -> Running: MPIJob running")]


def test_a_preemption_queues_the_stage_again_with_a_warning_and_re_admission_resumes_it(
        reconciler: Reconciler, cluster: KueueCluster) -> None:
    body = admitted(reconciler, cluster)
    cluster.preempt("j-glue")
    sync(reconciler, body)
    status = body["status"]
    assert status["phase"] == "Queued" and condition(status, "Queued")["reason"] == "Evicted"
    assert "Preempted: Preempted to accommodate a workload" in condition(status, "Queued")["message"]
    assert [(kind, reason) for kind, reason, _ in cluster.events] == [("Warning", "Queued")]
    assert suspend_writes(cluster) == [] and "restarts" not in status["stages"][0]  # not a failure: nothing deleted
    cluster.admit("j-glue")
    sync(reconciler, body)
    assert body["status"]["phase"] == "Running" and suspend_writes(cluster) == []


def test_a_users_suspend_of_a_queued_job_deactivates_its_workload_and_resuming_activates_it(
        reconciler: Reconciler, cluster: KueueCluster) -> None:
    body = admitted(reconciler, cluster)
    body["spec"]["runPolicy"] = {"suspend": True}
    body["metadata"]["generation"] = 2
    sync(reconciler, body)
    assert cluster.calls == [("get", "mpijobs", "j-glue"), ("list", "workloads", "mpijob-uid-1"),
                             ("patch", "workloads", "mpijob-j-glue-3f2a1"), ("patch", "status", "j")]
    assert cluster.workloads["mpijob-j-glue-3f2a1"]["spec"]["active"] is False
    assert cluster.mpijobs["j-glue"]["spec"]["runPolicy"]["suspend"] is False  # Kueue's to set, not ours
    # Kueue evicts the inactive Workload: the MPIJob is suspended, and the job is Suspended (the user's), not Queued.
    cluster.mpijobs["j-glue"]["spec"]["runPolicy"]["suspend"] = True
    cluster.set_conditions("j-glue", "Created", "Suspended")
    sync(reconciler, body)
    assert body["status"]["phase"] == "Suspended"
    cluster.calls.clear()
    body["spec"]["runPolicy"] = {"suspend": False}
    body["metadata"]["generation"] = 3
    sync(reconciler, body)
    assert ("patch", "workloads", "mpijob-j-glue-3f2a1") in cluster.calls and suspend_writes(cluster) == []
    assert cluster.workloads["mpijob-j-glue-3f2a1"]["spec"]["active"] is True and body["status"]["phase"] == "Queued"


def test_each_pretraining_phase_queues_again(reconciler: Reconciler, cluster: KueueCluster) -> None:
    body = fresh(reconciler, cluster, {**PRETRAIN, "queueName": "team-a"})
    cluster.add_workload("j-phase1")
    cluster.admit("j-phase1")
    cluster.set_conditions("j-phase1", "Created", "Running", "Succeeded")
    sync(reconciler, body)
    assert cluster.mpijobs["j-phase2"]["spec"]["runPolicy"]["suspend"] is True
    assert body["status"]["phase"] == "Queued" and body["status"]["currentStage"] == "phase2"
    assert [e["phase"] for e in body["status"]["stages"]] == ["Succeeded", "Queued"]


def test_without_a_queue_suspend_is_still_passed_to_the_mpijob(reconciler: Reconciler, cluster: KueueCluster) -> None:
    body = fresh(reconciler, cluster, GLUE)
    body["spec"]["runPolicy"] = {"suspend": True}
    body["metadata"]["generation"] = 2
    sync(reconciler, body)
    assert cluster.calls == [("get", "mpijobs", "j-glue"), ("patch", "mpijobs", "j-glue"), ("patch", "status", "j")]


# -------------------------------------------------------------------- recovery


def launcher(code: int, message: str, name: str = "j-glue-launcher-x7k2p", reason: str = "Error") -> dict[str, Any]:
    return pod(name, phase="Failed", containerStatuses=[{"name": "launcher", "state": {"terminated": {
        "exitCode": code, "reason": reason, "message": message, "finishedAt": "2026-12-01T09:59:50Z"}}}])


TRAINER_TAIL = ("[1,0]<stderr>:2026-12-01 09:59:49 level=INFO logger=bert_trainer starting\n"
                "[1,0]<stderr>:python -m bert_trainer glue: error: --init_checkpoint: s3://models/bert: no checkpoint here\n"
                "--------------------------------------------------------------------------\n"
                "Primary job  terminated normally, but 1 process returned a non-zero exit code.\n")


def failed(cluster: FakeCluster, name: str = "j-glue", reason: str = "MPIJobFailed",
           message: str = "MPIJob ml/j-glue has failed") -> None:
    cluster.mpijobs[name].setdefault("status", {})["conditions"] = [
        {"type": "Created", "status": "True", "reason": "MPIJobCreated", "message": "created"},
        {"type": "Running", "status": "False", "reason": "MPIJobRunning", "message": "running"},
        {"type": "Failed", "status": "True", "reason": reason, "message": message}]


def test_an_evicted_worker_restarts_the_stage_after_backoff(reconciler: Reconciler, cluster: KueueCluster, clock: Clock) -> None:
    body = fresh(reconciler, cluster, GLUE)
    cluster.set_conditions("j-glue", "Created", "Running")
    sync(reconciler, body)
    cluster.calls.clear()
    cluster.events.clear()
    cluster.pods = [EVICTED_WORKER]
    failed(cluster, reason="MPIJobEvicted", message="1/1 workers are evicted")
    sync(reconciler, body)
    assert cluster.calls == [("get", "mpijobs", "j-glue"), ("list", "pods", "j/glue"), ("delete", "mpijobs", "j-glue"),
                             ("patch", "status", "j")]
    stage = body["status"]["stages"][0]
    assert stage["restarts"] == 1 and stage["phase"] == "Restarting" and stage["restartedMpiJobUid"] == "mpijob-uid-1"
    assert stage["lastRestartTime"] == NOW and "completionTime" not in stage
    assert stage["lastRestartReason"] == ("Evicted: pod j-glue-worker-1: Evicted: The node was low on resource: "
                                          "ephemeral-storage.")
    restarting = condition(body["status"], "Restarting")
    assert body["status"]["phase"] == "Restarting" and restarting["reason"] == "RestartScheduled"
    assert restarting["message"] == f"restart 1 of 3 (not before 2026-12-01T10:00:10Z): {stage['lastRestartReason']}"
    assert cluster.events == [("Warning", "StageRestarted", f"glue: {restarting['message']}")]

    # The garbage collector removes the pods, then the MPIJob; before the backoff is over nothing is created.
    del cluster.mpijobs["j-glue"]
    cluster.calls.clear()
    cluster.events.clear()
    sync(reconciler, body)
    assert cluster.calls == [("get", "mpijobs", "j-glue")] and cluster.events == []
    clock.now = LATER
    cluster.calls.clear()
    sync(reconciler, body)
    assert cluster.calls == [("get", "mpijobs", "j-glue"), ("create", "mpijobs", "j-glue"), ("patch", "status", "j")]
    stage = body["status"]["stages"][0]
    assert cluster.mpijobs["j-glue"]["metadata"]["uid"] == "mpijob-uid-2"
    assert (stage["phase"], stage["restarts"], body["status"]["phase"]) == ("Pending", 1, "Pending")
    # The new MPIJob runs; the restart count stays on record.
    cluster.set_conditions("j-glue", "Created", "Running")
    sync(reconciler, body)
    assert body["status"]["phase"] == "Running" and body["status"]["stages"][0]["restarts"] == 1


def test_a_failure_is_counted_once_even_when_a_stale_event_shows_it_again(reconciler: Reconciler, cluster: KueueCluster,
                                                                        clock: Clock) -> None:
    body = fresh(reconciler, cluster, GLUE)
    cluster.pods = [EVICTED_WORKER]
    failed(cluster, reason="MPIJobEvicted")
    stale = copy.deepcopy(cluster.mpijobs["j-glue"])
    sync(reconciler, body)
    assert body["status"]["stages"][0]["restarts"] == 1
    cluster.calls.clear()
    sync(reconciler, body, observed=stale)  # a watch event from before the delete: read again, not trusted
    assert cluster.calls == [("get", "mpijobs", "j-glue")]  # still there (its pods go first): it waits
    assert body["status"]["stages"][0]["restarts"] == 1 and body["status"]["stages"][0]["phase"] == "Restarting"
    # Re-created and running, then the old MPIJob's late event arrives: the stage is what the API says now.
    del cluster.mpijobs["j-glue"]
    clock.now = LATER
    sync(reconciler, body)
    cluster.set_conditions("j-glue", "Created", "Running")
    sync(reconciler, body)
    cluster.calls.clear()
    cluster.events.clear()
    sync(reconciler, body, observed=stale)
    assert cluster.calls == [("get", "mpijobs", "j-glue")] and cluster.events == []
    assert body["status"]["phase"] == "Running" and body["status"]["stages"][0]["restarts"] == 1


def test_an_mpijob_gone_at_once_is_counted_and_recreated_after_backoff(reconciler: Reconciler, cluster: KueueCluster,
                                                                        clock: Clock) -> None:
    cluster.foreground = False
    body = fresh(reconciler, cluster, GLUE)
    cluster.pods = [pod("j-glue-worker-0", phase="Failed", conditions=[
        {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
         "message": "Preempted in order to admit critical pod"}])]
    failed(cluster)
    sync(reconciler, body)
    assert "j-glue" not in cluster.mpijobs and body["status"]["stages"][0]["restarts"] == 1
    assert body["status"]["stages"][0]["lastRestartReason"].startswith("PreemptionByScheduler: pod j-glue-worker-0")
    clock.now = LATER
    sync(reconciler, body)
    assert "j-glue" in cluster.mpijobs


def test_after_max_restarts_the_job_fails_with_restart_limit_exceeded(reconciler: Reconciler, cluster: KueueCluster,
                                                                       clock: Clock) -> None:
    body = fresh(reconciler, cluster, {**GLUE, "runPolicy": {"maxRestarts": 1}})
    cluster.pods = [EVICTED_WORKER]
    failed(cluster, reason="MPIJobEvicted")
    sync(reconciler, body)
    del cluster.mpijobs["j-glue"]
    clock.now = LATER
    sync(reconciler, body)
    failed(cluster, reason="MPIJobEvicted", message="1/1 workers are evicted")
    cluster.calls.clear()
    cluster.events.clear()
    sync(reconciler, body)
    assert cluster.calls == [("get", "mpijobs", "j-glue"), ("list", "pods", "j/glue"), ("patch", "status", "j")]  # kept
    status = body["status"]
    assert status["phase"] == "Failed" and status["stages"][0]["restarts"] == 1
    reason = condition(status, "Failed")
    assert reason["reason"] == "RestartLimitExceeded" and reason["message"].startswith(
        "MPIJob j-glue failed for an infrastructure reason after 1 restart(s) (runPolicy.maxRestarts: 1): pod j-glue-worker-1")
    assert [(kind, r) for kind, r, _ in cluster.events] == [("Warning", "Failed")]


def test_a_trainer_exit_2_is_never_retried(reconciler: Reconciler, cluster: KueueCluster) -> None:
    body = fresh(reconciler, cluster, GLUE)
    cluster.pods = [launcher(2, TRAINER_TAIL), pod("j-glue-worker-0", phase="Running")]
    failed(cluster)
    sync(reconciler, body)
    assert ("delete", "mpijobs", "j-glue") not in cluster.calls
    failure = condition(body["status"], "Failed")
    assert body["status"]["phase"] == "Failed" and failure["reason"] == "InvalidInput"
    assert failure["message"] == ("[1,0]<stderr>:python -m bert_trainer glue: error: --init_checkpoint: s3://models/bert: "
                                  "no checkpoint here")
    assert "restarts" not in body["status"]["stages"][0]


def test_a_trainer_error_line_with_exit_1_is_never_retried_and_other_exits_say_what_is_known(
        reconciler: Reconciler, cluster: KueueCluster) -> None:
    body = fresh(reconciler, cluster, GLUE)
    cluster.pods = [launcher(1, "[1,0]<stderr>:error: s3://results/glue: AccessDenied\nmpirun detected that one or more processes exited\n")]
    failed(cluster)
    sync(reconciler, body)
    assert condition(body["status"], "Failed")["reason"] == "TrainerError"
    assert condition(body["status"], "Failed")["message"] == "[1,0]<stderr>:error: s3://results/glue: AccessDenied"
    oom = {"metadata": {"name": "j-glue"}, "status": {"conditions": [
        {"type": "Failed", "status": "True", "reason": "MPIJobFailed", "message": "MPIJob ml/j-glue has failed"}]}}
    verdict = classify(oom, [launcher(137, "Killed", reason="OOMKilled")])
    assert (verdict.retry, verdict.reason) == (False, "MPIJobFailed") and "launcher exited 137: OOMKilled: Killed" in verdict.message


@pytest.mark.parametrize(("pods", "reason"), [
    ([pod("j-glue-worker-0", phase="Failed", conditions=[{"type": "DisruptionTarget", "status": "True",
                                                          "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"}])],
     "EvictionByEvictionAPI"),
    ([pod("j-glue-worker-0", phase="Failed", conditions=[{"type": "DisruptionTarget", "status": "True",
                                                          "reason": "DeletionByTaintManager", "message": "Taint manager: deleting due to NoExecute taint"}])],
     "DeletionByTaintManager"),
    ([pod("j-glue-worker-0", phase="Failed", reason="Terminated", message="Pod was terminated in response to imminent node shutdown.")],
     "Terminated"),
    ([launcher(143, "[1,0]<stderr>:phase1: stopped on SIGTERM at step 300 (run again to resume)")], "Terminated"),
    ([pod("j-glue-worker-0", phase="Failed", reason="OutOfnvidia.com/gpu", message="Node didn't have enough resource")],
     "OutOfnvidia.com/gpu"),
])
def test_infrastructure_causes_are_restarted(pods: list[dict[str, Any]], reason: str) -> None:
    mpijob = {"metadata": {"name": "j-glue"}, "status": {"conditions": [
        {"type": "Failed", "status": "True", "reason": "MPIJobFailed", "message": "MPIJob ml/j-glue has failed"}]}}
    verdict = classify(mpijob, pods)
    assert verdict.retry and verdict.reason == reason


def test_pods_of_another_job_say_nothing_about_this_one() -> None:
    mpijob = {"metadata": {"name": "j-glue"}, "status": {"conditions": [
        {"type": "Failed", "status": "True", "reason": "MPIJobFailed", "message": "failed"}]}}
    verdict = classify(mpijob, [pod("j-glue2-worker-0", phase="Failed", reason="Evicted", message="not ours")])
    assert not verdict.retry and verdict.reason == "MPIJobFailed"
    assert error_line("no error here\njust lines") is None


def test_an_accepted_spec_from_before_an_upgrade_is_not_a_change(reconciler: Reconciler, cluster: KueueCluster) -> None:
    """A job accepted by a version without runPolicy.maxRestarts: the new default is not a refused edit."""
    body = fresh(reconciler, cluster, GLUE)
    body["status"]["acceptedSpec"]["runPolicy"].pop("maxRestarts")
    reconciler.writer.forget("ml", "j")
    body["metadata"]["generation"] = 2
    sync(reconciler, body)
    assert condition(body["status"], "SpecApplied")["status"] == "True"
    assert UID == body["metadata"]["uid"]

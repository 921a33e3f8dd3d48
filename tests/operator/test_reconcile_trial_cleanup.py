"""sweep.keepTrialCheckpoints: false through the reconciler, against the recording fake: once the sweep has
succeeded, one batch/v1 Job (run as the tenant) deletes the checkpoints of every trial but the best, status.trialCleanup
follows it to its end, and then the job is not read again. The API calls of each sync are asserted, as the MPI
Operator's controller tests do."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bert_operator.kubectl.describe import describe
from bert_operator.pod_security import check as pod_security
from bert_operator.reconcile import Reconciler
from bert_operator.reports import merge_report
from bert_operator.api.parse import parse_job
from tests.operator.fakes import GLUE, NOW, UID, FakeCluster, condition, job, record, sync
from tests.schemas import object_errors

#: Three trials, all at once; the best by F1 is t1.
SWEEP = {**GLUE, "output": {"uri": "s3://results/glue", "credentialsSecret": "team-s3"},
         "task": {"glue": {"taskName": "MRPC", "sweep": {
             "learningRates": [5e-5, 3e-5, 2e-5], "maxParallel": 3, "keepTrialCheckpoints": False}}}}
F1 = {"t0": 0.80, "t1": 0.91, "t2": 0.85}


def reconciler_for(cluster: FakeCluster) -> Reconciler:
    return Reconciler(api=cluster, events=cluster, clock=lambda: NOW)


def run_trials(cluster: FakeCluster, reconciler: Reconciler, body: dict[str, Any], f1: dict[str, float] = F1) -> None:
    """Every trial succeeds, each reporting its dev F1 (none for a trial missing from `f1`)."""
    sync(reconciler, body)
    for trial in sorted(cluster.mpijobs):
        stage = trial.rsplit("-", 1)[1]
        cluster.set_conditions(trial, "Created", "Running", "Succeeded")
        if stage in f1:
            patch = merge_report(parse_job(body), body["status"], {"stage": stage, "results": {
                "task": "MRPC", "dev": {"accuracy": f1[stage] - 0.05, "f1": f1[stage]}, "exported": ["hf"]}}, NOW)
            record(reconciler, body, patch)


def swept(spec: dict[str, Any] = SWEEP, cluster: FakeCluster | None = None, f1: dict[str, float] = F1
           ) -> tuple[FakeCluster, Reconciler, dict[str, Any]]:
    """A sweep job "c" whose trials all succeeded, synced once more (the sweep's end seen)."""
    cluster = cluster or FakeCluster()
    reconciler = reconciler_for(cluster)
    body = job(spec, name="c")
    run_trials(cluster, reconciler, body, f1)
    sync(reconciler, body)
    return cluster, reconciler, body


def synced_calls(cluster: FakeCluster, reconciler: Reconciler, body: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The API calls of one sync (status writes aside)."""
    cluster.calls.clear()
    sync(reconciler, body)
    return [call for call in cluster.calls if call[1] != "status"]


def test_once_the_sweep_succeeded_a_job_removes_the_other_trials_checkpoints() -> None:
    cluster = FakeCluster()
    reconciler = reconciler_for(cluster)
    body = job(SWEEP, name="c")
    run_trials(cluster, reconciler, body)
    assert cluster.batch_jobs == {}  # not while a trial runs: the best is not known
    assert ("create", "jobs", "c-cleanup") in synced_calls(cluster, reconciler, body)
    status = body["status"]
    assert status["phase"] == "Succeeded" and status["results"]["best"]["trial"] == "t1"
    [made] = cluster.batch_jobs.values()
    assert object_errors(made) == []  # Kubernetes' own batch/v1 Job schema, strict
    pod = made["spec"]["template"]["spec"]
    assert pod_security("restricted", pod) == []
    [container] = pod["containers"]
    assert container["command"] == ["python", "-m", "bert_trainer", "remove-checkpoints",
                                    "--trial_output", "s3://results/glue/glue/t0",
                                    "--trial_output", "s3://results/glue/glue/t2"]  # never the best's folder
    assert {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e} == {
        "AWS_ACCESS_KEY_ID": "team-s3", "AWS_SECRET_ACCESS_KEY": "team-s3"}  # the keys by reference only
    assert "nvidia.com/gpu" not in str(container["resources"])
    assert made["metadata"]["ownerReferences"][0]["uid"] == UID and made["spec"]["backoffLimit"] == 2
    [refused, _] = made["spec"]["podFailurePolicy"]["rules"]  # a refused argument is not retried
    assert refused == {"action": "FailJob", "onExitCodes": {"containerName": "cleanup", "operator": "In", "values": [2]}}
    assert status["trialCleanup"] == {"job": "c-cleanup", "phase": "Running", "kept": "t1", "removed": ["t0", "t2"],
                                      "message": "removing the checkpoints of t0, t2"}
    assert ("Normal", "TrialCleanupStarted") in [(kind, reason) for kind, reason, _ in cluster.events]
    assert synced_calls(cluster, reconciler, body) == [("get", "jobs", "c-cleanup")]  # followed by resyncs
    cluster.end_batch_job("c-cleanup", "Complete")
    assert synced_calls(cluster, reconciler, body) == [("get", "jobs", "c-cleanup")]
    status = body["status"]
    assert status["phase"] == "Succeeded"
    assert status["trialCleanup"]["phase"] == "Succeeded" and status["trialCleanup"]["completionTime"] == NOW
    assert [t.get("checkpoints") for t in status["trials"]] == ["removed", None, "removed"]
    assert status["results"]["best"]["trial"] == "t1" and {a["stage"] for a in status["results"]["artifacts"]} == {"t1"}
    assert ("Normal", "TrialCheckpointsRemoved",
            "checkpoints of t0, t2 removed; t1 (the best) keeps its own") in cluster.events
    assert synced_calls(cluster, reconciler, body) == []  # ended: nothing more to read
    assert ("  checkpoints: Succeeded (c-cleanup): checkpoints of t0, t2 removed; t1 (the best) keeps its own"
            in describe(body, []).splitlines())


def test_a_failed_cleanup_job_is_a_warning_and_the_job_stays_succeeded() -> None:
    cluster, reconciler, body = swept()
    cluster.end_batch_job("c-cleanup", "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    sync(reconciler, body)
    cleanup = body["status"]["trialCleanup"]
    assert body["status"]["phase"] == "Succeeded" and cleanup["phase"] == "Failed"
    assert "BackoffLimitExceeded: Job has reached the specified backoff limit" in cleanup["message"]
    assert "kubectl logs job/c-cleanup" in cleanup["message"]
    assert [t.get("checkpoints") for t in body["status"]["trials"]] == [None, None, None]
    assert [reason for kind, reason, _ in cluster.events if kind == "Warning"] == ["TrialCleanupFailed"]
    assert synced_calls(cluster, reconciler, body) == []  # not made again


def test_a_refused_cleanup_job_fails_the_cleanup_with_the_servers_message_once() -> None:
    cluster = FakeCluster()
    cluster.refuse_batch_job = 'pods "c-cleanup" is forbidden: violates PodSecurity "restricted:latest"'
    cluster, reconciler, body = swept(cluster=cluster)
    cleanup = body["status"]["trialCleanup"]
    assert cleanup["phase"] == "Failed" and "violates PodSecurity" in cleanup["message"]
    assert body["status"]["phase"] == "Succeeded"
    assert [call for call in cluster.calls if call[1] == "jobs"].count(("create", "jobs", "c-cleanup")) == 1
    assert synced_calls(cluster, reconciler, body) == []


def test_a_job_of_that_name_that_is_not_the_sweeps_is_left_alone() -> None:
    cluster = FakeCluster()
    cluster.batch_jobs["c-cleanup"] = {"metadata": {"name": "c-cleanup", "uid": "other"}, "spec": {}}
    cluster, reconciler, body = swept(cluster=cluster)
    cleanup = body["status"]["trialCleanup"]
    assert cleanup["phase"] == "Failed" and "is not this job's" in cleanup["message"]
    assert cluster.batch_jobs["c-cleanup"]["metadata"]["uid"] == "other"


def test_a_cleanup_job_gone_before_its_end_was_seen_is_made_again() -> None:
    """Deleted by hand, or its TTL passed while the operator was down: the deletion is idempotent, so it runs again."""
    cluster, reconciler, body = swept()
    del cluster.batch_jobs["c-cleanup"]
    assert synced_calls(cluster, reconciler, body) == [("get", "jobs", "c-cleanup"), ("create", "jobs", "c-cleanup")]
    assert body["status"]["trialCleanup"]["phase"] == "Running"


def test_a_queued_cleanup_job_carries_the_queue_and_says_it_waits() -> None:
    cluster, reconciler, body = swept({**SWEEP, "queueName": "team-a"})
    made = cluster.batch_jobs["c-cleanup"]
    assert made["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    made["spec"]["suspend"] = True  # Kueue's webhook on a Job with a queue-name label, before the Job controller
    sync(reconciler, body)          # has said so in a condition
    assert body["status"]["trialCleanup"]["message"] == "suspended (queued: waiting for admission)"
    made["status"] = {"conditions": [{"type": "Suspended", "status": "True", "reason": "JobSuspended",
                                      "message": "Job suspended"}]}
    sync(reconciler, body)
    assert body["status"]["trialCleanup"]["message"] == "suspended (queued: Job suspended)"


@pytest.mark.parametrize("sweep,f1,message", [
    ({"learningRates": [2e-5]}, F1, "one trial, the best: nothing to remove"),
    ({"learningRates": [5e-5, 2e-5]}, {}, "no trial reported the metric the sweep selects by, so there is no best: "
                                          "every trial keeps its checkpoints"),
])
def test_no_job_when_there_is_nothing_to_remove_or_no_best(sweep: dict[str, Any], f1: dict[str, float],
                                                           message: str) -> None:
    spec = copy.deepcopy(SWEEP)
    spec["task"]["glue"]["sweep"] = {**sweep, "maxParallel": 2, "keepTrialCheckpoints": False}
    cluster, reconciler, body = swept(spec, f1=f1)
    assert body["status"]["phase"] == "Succeeded" and cluster.batch_jobs == {}
    cleanup = body["status"]["trialCleanup"]
    assert (cleanup["phase"], cleanup["message"], cleanup.get("removed", []), "job" in cleanup) == (
        "Succeeded", message, [], False)  # no Job named: none was made
    assert f"  checkpoints: Succeeded: {message}" in describe(body, []).splitlines()
    assert synced_calls(cluster, reconciler, body) == []


def test_by_default_every_trial_keeps_its_checkpoints() -> None:
    spec = copy.deepcopy(SWEEP)
    del spec["task"]["glue"]["sweep"]["keepTrialCheckpoints"]
    cluster, reconciler, body = swept(spec)
    assert body["status"]["phase"] == "Succeeded" and cluster.batch_jobs == {}
    assert "trialCleanup" not in body["status"]
    assert not [call for call in cluster.calls if call[1] == "jobs"]


@pytest.mark.parametrize("accepted,edited", [(True, False), (False, True)])
def test_an_edit_of_keep_trial_checkpoints_after_the_start_is_refused_and_the_accepted_one_decides(
        accepted: bool, edited: bool) -> None:
    """The spec the job started with decides, as for every field: an edit after the start is refused, the cleanup
    (or none) goes on as accepted, and once it has ended nothing more is read, however often the job is synced."""
    spec = copy.deepcopy(SWEEP)
    spec["task"]["glue"]["sweep"]["keepTrialCheckpoints"] = accepted
    cluster, reconciler, body = swept(spec)
    body["spec"]["task"]["glue"]["sweep"]["keepTrialCheckpoints"] = edited
    body["metadata"]["generation"] = 2
    sync(reconciler, body)
    if not accepted:  # the cleanup made before the edit goes on to its end
        cluster.end_batch_job("c-cleanup", "Complete")
        sync(reconciler, body)
        assert body["status"]["trialCleanup"]["phase"] == "Succeeded"
    else:
        assert cluster.batch_jobs == {} and "trialCleanup" not in body["status"]
    assert condition(body["status"], "SpecApplied")["reason"] == "ImmutableFieldChanged"
    assert [synced_calls(cluster, reconciler, body) for _ in range(3)] == [[], [], []]

"""The reconciler under BertTrainingPolicies, against the recording fake: defaults and forced values reach the
rendered MPIJob, a violating job fails before anything is created, a policy edited later binds only what comes next."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bert_operator.policy import PolicyInput, parse_policy
from bert_operator.reconcile import Reconciler
from tests.operator.test_reconcile import GLUE, PRETRAIN, FakeCluster, condition, job

LABELS = {"team": "a"}


def team_policy(**spec: Any) -> Any:
    return parse_policy({"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingPolicy",
                         "metadata": {"name": "team-default"},
                         "spec": {"namespaceSelector": {"matchLabels": LABELS}, **spec}})


class Policies:
    """The operator's cache of policies and namespace labels, as the reconciler asks it."""

    def __init__(self, *policies: Any) -> None:
        self.policies = policies

    def __call__(self, namespace: str) -> PolicyInput:
        return PolicyInput(LABELS if namespace == "ml" else {}, tuple(self.policies))


@pytest.fixture()
def cluster() -> FakeCluster:
    return FakeCluster()


def reconciler_for(cluster: FakeCluster, policies: Policies) -> Reconciler:
    return Reconciler(api=cluster, events=cluster, clock=lambda: "2026-12-01T10:00:00Z", policies=policies)


FORCED_QUEUE = dict(forced={"queueName": "team-a"}, defaults={"nodeSelector": {"pool": "gpu"}},
                    limits={"maxGpusPerJob": 16})


def test_forced_and_default_values_reach_the_mpijob_and_the_status_says_why(cluster: FakeCluster) -> None:
    body = job(GLUE)
    reconciler_for(cluster, Policies(team_policy(**FORCED_QUEUE))).reconcile(body)
    mpijob = cluster.mpijobs["j-glue"]
    assert mpijob["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    worker = mpijob["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]
    assert worker["nodeSelector"] == {"pool": "gpu"}
    status = body["status"]
    assert status["policy"] == {"policies": ["team-default"], "applied": [
        {"path": "spec.resources.nodeSelector", "value": '{"pool":"gpu"}', "how": "default", "policy": "team-default"},
        {"path": "spec.queueName", "value": "team-a", "how": "forced", "policy": "team-default"}]}
    assert "queueName" not in status["acceptedSpec"]  # the job's own spec: what the user may not change later


def test_a_job_that_breaks_a_policy_fails_before_anything_is_created(cluster: FakeCluster) -> None:
    body = job({**GLUE, "resources": {"workers": 4, "gpusPerWorker": 8}})
    reconciler_for(cluster, Policies(team_policy(**FORCED_QUEUE))).reconcile(body)
    assert cluster.calls == [("patch", "status", "j")] and cluster.mpijobs == {}
    failed = condition(body["status"], "Failed")
    message = ("spec.resources.gpusPerWorker: 8 exceeds 16 GPUs per job allowed by BertTrainingPolicy team-default "
               "(4 x 8 = 32)")
    assert (body["status"]["phase"], failed["reason"], failed["message"]) == ("Failed", "PolicyViolation", message)
    assert cluster.events == [("Warning", "PolicyViolation", message)]
    assert "acceptedSpec" not in body["status"] and body["status"]["policy"]["policies"] == ["team-default"]


def test_a_policy_edited_after_the_start_binds_the_next_stage_not_the_running_one(cluster: FakeCluster) -> None:
    policies = Policies(team_policy(forced={"queueName": "team-a"}))
    reconciler = reconciler_for(cluster, policies)
    body = job(PRETRAIN)
    reconciler.reconcile(body)
    assert cluster.mpijobs["j-phase1"]["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    # The platform team tightens the policy: 4 GPUs per job (this job has 8) and another queue.
    policies.policies = (team_policy(forced={"queueName": "team-a-large"}, limits={"maxGpusPerJob": 4}),)
    cluster.mpijobs["j-phase1"]["spec"]["runPolicy"]["suspend"] = False  # Kueue admitted it
    cluster.set_conditions("j-phase1", "Created", "Running")
    reconciler.reconcile(body)
    assert body["status"]["phase"] == "Running"  # not failed: it was admitted
    cluster.set_conditions("j-phase1", "Created", "Running", "Succeeded")
    reconciler.reconcile(body)
    assert cluster.mpijobs["j-phase2"]["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a-large"


def test_a_namespace_no_policy_selects_is_untouched(cluster: FakeCluster) -> None:
    body = job(GLUE)
    body["metadata"]["namespace"] = "other"
    reconciler_for(cluster, Policies(team_policy(**FORCED_QUEUE))).reconcile(body)
    assert "kueue.x-k8s.io/queue-name" not in cluster.mpijobs["j-glue"]["metadata"]["labels"]
    assert "policy" not in body["status"]


def test_policy_values_that_make_the_job_invalid_fail_it_naming_the_field(cluster: FakeCluster) -> None:
    body = job(GLUE)
    reconciler_for(cluster, Policies(team_policy(forced={"schedulerName": "volcano"},
                                                 defaults={"precision": "bf16"}))).reconcile(body)
    assert body["status"]["phase"] != "Failed"  # valid values: no failure
    broken = job(copy.deepcopy(GLUE), name="k")
    cluster2 = FakeCluster()
    reconciler_for(cluster2, Policies(team_policy(forced={"nodeSelector": {"bad key!": "x"}}))).reconcile(broken)
    failed = condition(broken["status"], "Failed")
    assert failed["reason"] == "PolicyViolation" and failed["message"].startswith(
        "the job with its BertTrainingPolicies' values is not valid: spec.resources.nodeSelector")
    assert cluster2.mpijobs == {}


class Unreadable:
    """A policy source whose API is down."""

    def __call__(self, namespace: str) -> PolicyInput:
        raise ConnectionError("connection refused")


def test_unreadable_policies_hold_a_new_job_with_a_status_a_condition_and_one_event(cluster: FakeCluster) -> None:
    reconciler = reconciler_for(cluster, Unreadable())  # type: ignore[arg-type]
    body = job(GLUE)
    reconciler.reconcile(body)
    assert cluster.mpijobs == {} and cluster.calls == [("patch", "status", "j")]
    ready = condition(body["status"], "Ready")
    assert body["status"]["phase"] == "Pending" and (ready["status"], ready["reason"]) == ("False", "PoliciesUnreadable")
    assert "ConnectionError: connection refused" in ready["message"]
    assert [(kind, reason) for kind, reason, _ in cluster.events] == [("Warning", "PoliciesUnreadable")]
    reconciler.reconcile(body)  # still down: nothing new to say
    assert len(cluster.events) == 1 and cluster.mpijobs == {}
    readable = reconciler_for(cluster, Policies(team_policy(**FORCED_QUEUE)))
    readable.reconcile(body)
    assert cluster.mpijobs["j-glue"]["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"


def test_unreadable_policies_let_a_running_stage_go_on(cluster: FakeCluster) -> None:
    body = job(GLUE)
    reconciler_for(cluster, Policies()).reconcile(body)
    cluster.set_conditions("j-glue", "Created", "Running")
    reconciler_for(cluster, Unreadable()).reconcile(body)  # type: ignore[arg-type]
    assert body["status"]["phase"] == "Running" and condition(body["status"], "Ready")["status"] == "True"

"""The reconciler under BertTrainingPolicies, against the recording fake: defaults and forced values reach the
rendered MPIJob, a violating job fails before anything is created, a policy edited later binds only what comes next."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bert_operator.policy import PolicyInput, parse_policy
from bert_operator.policy_cache import PolicyCache
from bert_operator.reconcile import Reconciler
from bert_operator.webhook import verdict
from tests.operator.fakes import GLUE, PRETRAIN, FakeCluster, condition, job, sync

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


def reconciler_for(cluster: FakeCluster, policies: Policies) -> Reconciler:
    return Reconciler(api=cluster, events=cluster, clock=lambda: "2026-12-01T10:00:00Z", policies=policies)


FORCED_QUEUE = dict(forced={"queueName": "team-a"}, defaults={"nodeSelector": {"pool": "gpu"}},
                    limits={"maxGpusPerJob": 16})


def test_forced_and_default_values_reach_the_mpijob_and_the_status_says_why(cluster: FakeCluster) -> None:
    body = job(GLUE)
    sync(reconciler_for(cluster, Policies(team_policy(**FORCED_QUEUE))), body)
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
    sync(reconciler_for(cluster, Policies(team_policy(**FORCED_QUEUE))), body)
    assert cluster.calls == [("patch", "status", "j")] and cluster.mpijobs == {}
    failed = condition(body["status"], "Failed")
    message = ("spec.resources.gpusPerWorker: 8 exceeds 16 GPUs per job allowed by BertTrainingPolicy team-default "
               "(4 x 8 = 32)")
    assert (body["status"]["phase"], failed["reason"], failed["message"]) == ("Failed", "PolicyViolation", message)
    assert cluster.events == [("Warning", "PolicyViolation", message)]
    assert "acceptedSpec" not in body["status"] and body["status"]["policy"]["policies"] == ["team-default"]
    assert (body["status"]["task"], body["status"]["workers"], body["status"]["gpus"]) == ("glue", 4, 32)  # kubectl get's columns


def test_a_policy_edited_after_the_start_binds_the_next_stage_not_the_running_one(cluster: FakeCluster) -> None:
    policies = Policies(team_policy(forced={"queueName": "team-a"}))
    reconciler = reconciler_for(cluster, policies)
    body = job(PRETRAIN)
    sync(reconciler, body)
    assert cluster.mpijobs["j-phase1"]["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    # The platform team tightens the policy: 4 GPUs per job (this job has 8) and another queue.
    policies.policies = (team_policy(forced={"queueName": "team-a-large"}, limits={"maxGpusPerJob": 4}),)
    cluster.mpijobs["j-phase1"]["spec"]["runPolicy"]["suspend"] = False  # Kueue admitted it
    cluster.set_conditions("j-phase1", "Created", "Running")
    sync(reconciler, body)
    assert body["status"]["phase"] == "Running"  # not failed: it was admitted
    cluster.set_conditions("j-phase1", "Created", "Running", "Succeeded")
    sync(reconciler, body)
    assert cluster.mpijobs["j-phase2"]["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a-large"


def test_a_namespace_no_policy_selects_is_untouched(cluster: FakeCluster) -> None:
    body = job(GLUE)
    body["metadata"]["namespace"] = "other"
    sync(reconciler_for(cluster, Policies(team_policy(**FORCED_QUEUE))), body)
    assert "kueue.x-k8s.io/queue-name" not in cluster.mpijobs["j-glue"]["metadata"]["labels"]
    assert "policy" not in body["status"]


def test_policy_values_that_make_the_job_invalid_fail_it_naming_the_field(cluster: FakeCluster) -> None:
    body = job(GLUE)
    sync(reconciler_for(cluster, Policies(team_policy(forced={"schedulerName": "volcano"},
                                                      defaults={"precision": "bf16"}))), body)
    assert body["status"]["phase"] != "Failed"  # valid values: no failure
    broken = job(copy.deepcopy(GLUE), name="k")
    cluster2 = FakeCluster()
    sync(reconciler_for(cluster2, Policies(team_policy(forced={"nodeSelector": {"bad key!": "x"}}))), broken)
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
    sync(reconciler, body)
    assert cluster.mpijobs == {} and cluster.calls == [("patch", "status", "j")]
    ready = condition(body["status"], "Ready")
    assert body["status"]["phase"] == "Pending" and (ready["status"], ready["reason"]) == ("False", "PoliciesUnreadable")
    assert "ConnectionError: connection refused" in ready["message"]
    assert [(kind, reason) for kind, reason, _ in cluster.events] == [("Warning", "PoliciesUnreadable")]
    sync(reconciler, body)  # still down: nothing new to say
    assert len(cluster.events) == 1 and cluster.mpijobs == {}
    readable = reconciler_for(cluster, Policies(team_policy(**FORCED_QUEUE)))
    sync(readable, body)
    assert cluster.mpijobs["j-glue"]["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"


def test_unreadable_policies_let_a_running_stage_go_on(cluster: FakeCluster) -> None:
    body = job(GLUE)
    sync(reconciler_for(cluster, Policies()), body)
    cluster.set_conditions("j-glue", "Created", "Running")
    sync(reconciler_for(cluster, Unreadable()), body)  # type: ignore[arg-type]
    assert body["status"]["phase"] == "Running" and condition(body["status"], "Ready")["status"] == "True"


# ------------------------------------------------------------- an invalid policy fails closed (issue 25, item 1)


class PolicyApi:
    """The API a PolicyCache lists from: these policies, and namespace `ml` labelled as the team's."""

    def __init__(self, *bodies: dict[str, Any]) -> None:
        self.bodies = list(bodies)

    def list_policies(self) -> list[dict[str, Any]]:
        return self.bodies

    def list_namespace_labels(self) -> dict[str, dict[str, str]]:
        return {"ml": LABELS, "other": {}}


def policy_body(generation: int = 1, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingPolicy",
            "metadata": {"name": "team-default", "uid": "policy-uid", "generation": generation},
            "spec": {"namespaceSelector": {"matchLabels": LABELS}, **spec}}


#: The team-a example's mistake (queueName both defaulted and forced) beside limits a tenant would like to escape.
BROKEN = policy_body(defaults={"queueName": "a"}, forced={"queueName": "team-a"},
                     limits={"allowedImages": ["registry.example.com/bert/*"], "maxGpusPerJob": 8})


def test_an_invalid_policy_holds_a_new_job_of_its_namespaces_naming_the_policy_and_the_error(cluster: FakeCluster) -> None:
    cache = PolicyCache(PolicyApi(BROKEN))
    reconciler = reconciler_for(cluster, cache.input_for)  # type: ignore[arg-type]
    body = job({**GLUE, "image": "docker.io/evil/miner", "resources": {"workers": 4, "gpusPerWorker": 8}})
    sync(reconciler, body)
    assert cluster.mpijobs == {}
    ready = condition(body["status"], "Ready")
    assert body["status"]["phase"] == "Pending" and (ready["status"], ready["reason"]) == ("False", "PolicyInvalid")
    assert "BertTrainingPolicy team-default is invalid" in ready["message"]
    assert "spec.defaults: sets spec.queueName, which spec.forced also sets" in ready["message"]
    assert [(kind, reason) for kind, reason, _ in cluster.events] == [("Warning", "PolicyInvalid")]
    sync(reconciler, body)  # still invalid: nothing new to say, nothing made
    assert len(cluster.events) == 1 and cluster.mpijobs == {}
    other = job(GLUE, name="elsewhere")
    other["metadata"]["namespace"] = "other"
    sync(reconciler, other)  # a namespace it does not select is not held
    assert "elsewhere-glue" in cluster.mpijobs


def test_an_invalid_policy_lets_a_running_stage_go_on_and_holds_the_next(cluster: FakeCluster) -> None:
    body = job(PRETRAIN)
    sync(reconciler_for(cluster, Policies()), body)
    cluster.set_conditions("j-phase1", "Created", "Running")
    held = reconciler_for(cluster, PolicyCache(PolicyApi(BROKEN)).input_for)  # type: ignore[arg-type]
    sync(held, body)
    assert body["status"]["phase"] == "Running" and condition(body["status"], "Ready")["status"] == "True"
    cluster.set_conditions("j-phase1", "Created", "Running", "Succeeded")
    sync(held, body)
    assert "j-phase2" not in cluster.mpijobs and condition(body["status"], "Ready")["reason"] == "PolicyInvalid"


def test_an_invalid_edit_keeps_the_last_valid_generation_enforced(cluster: FakeCluster) -> None:
    cache = PolicyCache(PolicyApi(policy_body(forced={"queueName": "team-a"}, limits={"maxGpusPerJob": 8})))
    cache.input_for("ml")
    cache.policy_event("MODIFIED", {**BROKEN, "metadata": {**BROKEN["metadata"], "generation": 2}})
    reconciler = reconciler_for(cluster, cache.input_for)  # type: ignore[arg-type]
    too_big = job({**GLUE, "resources": {"workers": 4, "gpusPerWorker": 8}}, name="big")
    sync(reconciler, too_big)
    assert condition(too_big["status"], "Failed")["reason"] == "PolicyViolation" and cluster.mpijobs == {}
    body = job(GLUE)
    sync(reconciler, body)
    assert cluster.mpijobs["j-glue"]["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"


# ------------------------------------------- a stage keeps what the policies decided for it (issue 25, item 20)


def test_deleting_the_policy_that_forced_the_queue_leaves_the_queued_stage_to_kueue(cluster: FakeCluster) -> None:
    policies = Policies(team_policy(forced={"queueName": "team-a"}))
    reconciler = reconciler_for(cluster, policies)
    body = job(GLUE)
    sync(reconciler, body)
    assert cluster.mpijobs["j-glue"]["spec"]["runPolicy"]["suspend"] is True and body["status"]["phase"] == "Queued"
    assert body["status"]["stages"][0]["queueName"] == "team-a"
    policies.policies = ()  # the platform team deletes the policy while Kueue holds the stage
    sync(reconciler, body)
    assert ("patch", "mpijobs", "j-glue") not in cluster.calls
    assert cluster.mpijobs["j-glue"]["spec"]["runPolicy"]["suspend"] is True and body["status"]["phase"] == "Queued"


def test_a_queue_a_policy_adds_later_does_not_make_an_unqueued_stage_queued(cluster: FakeCluster) -> None:
    policies = Policies()
    reconciler = reconciler_for(cluster, policies)
    body = job({**GLUE, "runPolicy": {"suspend": True}})
    sync(reconciler, body)
    cluster.set_conditions("j-glue", "Created", "Suspended")
    sync(reconciler, body)
    assert body["status"]["phase"] == "Suspended"
    policies.policies = (team_policy(forced={"queueName": "team-a"}),)
    body["spec"]["runPolicy"]["suspend"] = False  # the user resumes: the MPIJob, not a Workload, is told
    sync(reconciler, body)
    assert cluster.mpijobs["j-glue"]["spec"]["runPolicy"]["suspend"] is False


def test_the_suspend_of_an_mpijob_with_kueues_label_is_never_written(cluster: FakeCluster) -> None:
    body = job(GLUE)
    sync(reconciler_for(cluster, Policies(team_policy(forced={"queueName": "team-a"}))), body)
    del body["status"]["stages"][0]["queueName"]  # a status written before stages recorded their queue
    sync(reconciler_for(cluster, Policies()), body)
    assert ("patch", "mpijobs", "j-glue") not in cluster.calls and body["status"]["phase"] == "Queued"


# -------------------------------------------- an output a policy gives (issue 25, item 19)

NO_OUTPUT = {key: value for key, value in GLUE.items() if key != "output"}
TEAM_OUTPUT = {"output": {"uri": "s3://bert-results/{namespace}/{name}", "credentialsSecret": "team-s3"}}


def test_a_job_without_output_gets_the_policys_default_output(cluster: FakeCluster) -> None:
    body = job(NO_OUTPUT)
    sync(reconciler_for(cluster, Policies(team_policy(defaults=TEAM_OUTPUT))), body)
    assert "s3://bert-results/ml/j" in str(cluster.mpijobs["j-glue"]["spec"])
    assert body["status"]["resolved"]["output"] == {"uri": "s3://bert-results/ml/j", "credentialsSecret": "team-s3"}


@pytest.mark.parametrize("policies", [(), (team_policy(forced={"queueName": "team-a"}),)], ids=["none", "no-output"])
def test_a_job_without_output_that_no_policy_gives_one_fails_naming_the_field(cluster: FakeCluster, policies: Any) -> None:
    body = job(NO_OUTPUT)
    sync(reconciler_for(cluster, Policies(*policies)), body)
    failed = condition(body["status"], "Failed")
    assert body["status"]["phase"] == "Failed" and cluster.mpijobs == {}
    assert failed["message"].startswith("spec.output.uri: required") and \
        "no BertTrainingPolicy selecting namespace ml gives it" in failed["message"]


def test_a_started_job_keeps_the_output_it_started_with_when_the_policy_changes(cluster: FakeCluster) -> None:
    policies = Policies(team_policy(defaults=TEAM_OUTPUT))
    reconciler = reconciler_for(cluster, policies)
    body = job({key: value for key, value in PRETRAIN.items() if key != "output"})
    sync(reconciler, body)
    cluster.set_conditions("j-phase1", "Created", "Running", "Succeeded")
    policies.policies = ()  # phase2 must still read phase1's checkpoints where phase1 wrote them
    sync(reconciler, body)
    assert "s3://bert-results/ml/j" in str(cluster.mpijobs["j-phase2"]["spec"])


def test_the_webhook_refuses_what_the_operator_would_hold_or_fail() -> None:
    held, _ = verdict(job(GLUE), PolicyCache(PolicyApi(BROKEN)).input_for("ml"))
    assert held is not None and held.startswith("metadata.namespace: BertTrainingPolicy team-default is invalid")
    unset, _ = verdict(job(NO_OUTPUT), None)
    assert unset is not None and unset.startswith("spec.output.uri: required, and no BertTrainingPolicy selecting")
    given, applied = verdict(job(NO_OUTPUT), PolicyInput(LABELS, (team_policy(defaults=TEAM_OUTPUT),)))
    assert given is None and "BertTrainingPolicy team-default sets spec.output.uri (default): s3://bert-results/ml/j" in applied

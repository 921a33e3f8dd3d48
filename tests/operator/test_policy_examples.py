"""examples/policy-*.yaml do what the admin guide says, through the one function the webhook and the operator share.

The "done when" of issue 15: in a namespace labelled for team-a every job goes through the team's queue, cannot
exceed 16 GPUs, cannot run an image outside the team's registry and writes only under the team's output prefix;
the every-namespace policy agrees with it and bounds every job's run time.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from bert_operator.policy import conflicts, decide, parse_policy
from bert_operator.render import RenderSettings, render_all
from tests.conftest import REPO

TEAM_A = parse_policy(yaml.safe_load((REPO / "examples" / "policy-team-a.yaml").read_text()))
CLUSTER = parse_policy(yaml.safe_load((REPO / "examples" / "policy-cluster-defaults.yaml").read_text()))
POLICIES = (TEAM_A, CLUSTER)
#: The namespace the admin guide sets up, with the label the team's policy selects (and the API server's own).
TEAM_A_LABELS = {"bertoperator.io/team": "team-a", "kubernetes.io/metadata.name": "team-a"}
OTHER_LABELS = {"kubernetes.io/metadata.name": "ml-training"}


def example(name: str, namespace: str = "team-a", **spec: Any) -> dict[str, Any]:
    """An example job moved into `namespace`, its spec updated with `spec` (a None value removes the field)."""
    body = yaml.safe_load((REPO / "examples" / name).read_text())
    body["metadata"]["namespace"] = namespace
    for key, value in spec.items():
        if value is None:
            body["spec"].pop(key, None)
        else:
            body["spec"][key] = copy.deepcopy(value)
    return body


def compliant_glue(**spec: Any) -> dict[str, Any]:
    """examples/glue-mrpc.yaml as a team-a tenant writes it: no output of its own (the policy's default gives one)."""
    return example("glue-mrpc.yaml", **{"output": None, **spec})


def test_the_4x8_pretraining_job_is_refused_naming_the_policy_and_each_field() -> None:
    decision = decide(example("bert-large-pretrain.yaml"), TEAM_A_LABELS, POLICIES)
    assert {error.path: error.message for error in decision.violations} == {
        "spec.resources.gpusPerWorker": "8 exceeds 16 GPUs per job allowed by BertTrainingPolicy team-a (4 x 8 = 32)",
        "spec.resources.cpu": "64 exceeds 192 CPUs per job allowed by BertTrainingPolicy team-a (4 x 64 = 256)",
        "spec.resources.memory": "480Gi exceeds 1536Gi memory per job allowed by BertTrainingPolicy team-a "
                                 "(4 x 480Gi = 1920Gi)",
        "spec.resources.nodeSelector": "may not be set in this namespace (BertTrainingPolicy team-a sets it); remove it",
        "spec.resources.tolerations": "may not be set in this namespace (BertTrainingPolicy team-a sets it); remove it",
        "spec.output.uri": "'s3://bert-results/bert-large-lamb' is not under a location allowed by BertTrainingPolicy "
                           "team-a: s3://bert-results/team-a/",
        # The team's store and Secret are the platform's: a tenant cannot point its output elsewhere.
        "spec.output.endpoint": "may not be set in this namespace (BertTrainingPolicy team-a sets it); remove it",
        "spec.output.credentialsSecret": "may not be set in this namespace (BertTrainingPolicy team-a sets it); remove it",
    }


def test_a_compliant_job_gets_the_forced_queue_the_teams_defaults_and_the_clusters_run_policy() -> None:
    decision = decide(compliant_glue(queueName="someone-elses-queue"), TEAM_A_LABELS, POLICIES)
    assert decision.violations == ()
    spec = decision.job.spec
    assert spec.queue_name == "team-a"  # forced over the job's own
    assert spec.image == "registry.example.com/team-a/bert-trainer:0.1.0"
    assert (spec.output.uri, spec.output.endpoint, spec.output.credentials_secret) == (
        "s3://bert-results/team-a/glue-mrpc", "https://s3.example.com", "bert-results-s3")
    assert spec.resources.node_selector == {"bertoperator.io/pool": "team-a-gpu"}
    assert spec.resources.priority_class_name == "team-a-training"
    assert (spec.resources.cpu, spec.resources.memory) == ("16", "128Gi")
    assert (spec.run_policy.active_deadline_seconds, spec.run_policy.ttl_seconds_after_finished,
            spec.run_policy.max_restarts) == (172800, 86400, 5)
    status = decision.status()
    assert status["policies"] == ["cluster-defaults", "team-a"]
    assert {(a["path"], a["how"], a["policy"]) for a in status["applied"]} >= {
        ("spec.queueName", "forced", "team-a"), ("spec.output.uri", "default", "team-a"),
        ("spec.output.credentialsSecret", "default", "team-a"),
        ("spec.runPolicy.activeDeadlineSeconds", "default", "cluster-defaults")}


def test_the_rendered_mpijob_of_a_compliant_job_goes_through_the_teams_queue_on_its_nodes() -> None:
    decision = decide(compliant_glue(), TEAM_A_LABELS, POLICIES)
    [mpijob] = render_all(decision.job, RenderSettings(default_image="ghcr.io/bert-operator/trainer:0.1.0"))
    assert mpijob["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    for replica in mpijob["spec"]["mpiReplicaSpecs"].values():
        pod = replica["template"]["spec"]
        assert {c["image"] for c in pod["containers"]} == {"registry.example.com/team-a/bert-trainer:0.1.0"}
        assert pod["priorityClassName"] == "team-a-training"
    worker = mpijob["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]
    assert worker["nodeSelector"]["bertoperator.io/pool"] == "team-a-gpu"


@pytest.mark.parametrize("spec, path, words", [
    ({"image": "docker.io/someone/bert:latest"}, "spec.image", "must match one of registry.example.com/team-a/*"),
    ({"output": {"uri": "s3://bert-results/team-b/mrpc"}}, "spec.output.uri", "s3://bert-results/team-a/"),
    ({"output": {"uri": "s3://bert-results/team-ab/mrpc"}}, "spec.output.uri", "s3://bert-results/team-a/"),
    ({"resources": {"workers": 3, "gpusPerWorker": 8}}, "spec.resources.gpusPerWorker", "(3 x 8 = 24)"),
    ({"resources": {"workers": 1, "gpusPerWorker": 1, "nodeSelector": {"pool": "any"}}}, "spec.resources.nodeSelector",
     "may not be set"),
    ({"runPolicy": {"activeDeadlineSeconds": 604801}}, "spec.runPolicy.activeDeadlineSeconds",
     "exceeds 604800 allowed by BertTrainingPolicy cluster-defaults"),
])
def test_each_rule_of_the_team_namespace_refuses_the_job_that_breaks_it(spec: dict[str, Any], path: str, words: str) -> None:
    decision = decide(compliant_glue(**spec), TEAM_A_LABELS, POLICIES)
    [error] = decision.violations
    assert error.path == path and words in error.message and "BertTrainingPolicy" in error.message


def test_the_teams_own_image_and_prefix_are_allowed_and_the_output_goes_to_the_teams_store() -> None:
    job = compliant_glue(image="registry.example.com/team-a/bert-trainer:0.2.0-rc1",
                         output={"uri": "s3://bert-results/team-a/experiments/mrpc-3"},
                         resources={"workers": 2, "gpusPerWorker": 8})
    decision = decide(job, TEAM_A_LABELS, POLICIES)
    assert decision.violations == ()
    output = decision.job.spec.output  # its own uri; the store and Secret from the policy
    assert (output.endpoint, output.credentials_secret) == ("https://s3.example.com", "bert-results-s3")


def test_a_1024_worker_cpu_job_is_refused_by_the_teams_cpu_memory_and_worker_limits() -> None:
    """Issue 25, item 16: 1,024 workers x 96 CPU x 700Gi with 0 GPUs passed the GPU limit untouched."""
    decision = decide(compliant_glue(resources={"workers": 1024, "gpusPerWorker": 0, "cpu": "96", "memory": "700Gi"}),
                      TEAM_A_LABELS, POLICIES)
    assert {error.path: error.message for error in decision.violations} == {
        "spec.resources.workers": "1024 exceeds 16 workers allowed by BertTrainingPolicy team-a",
        "spec.resources.cpu": "96 exceeds 192 CPUs per job allowed by BertTrainingPolicy team-a (1024 x 96 = 98304)",
        "spec.resources.memory": "700Gi exceeds 1536Gi memory per job allowed by BertTrainingPolicy team-a "
                                 "(1024 x 700Gi = 716800Gi)"}


def test_the_team_closes_every_scheduling_field() -> None:
    """Issue 25, item 16: the team's queue and PriorityClass are forced; every other scheduling field is forbidden."""
    forced = decide(compliant_glue(queueName="other", resources={"workers": 1, "gpusPerWorker": 8,
                                                                 "priorityClassName": "system-cluster-critical"}),
                    TEAM_A_LABELS, POLICIES)
    assert forced.violations == ()
    assert (forced.job.spec.queue_name, forced.job.spec.resources.priority_class_name) == ("team-a", "team-a-training")
    tenant = compliant_glue(workloadPriorityClassName="urgent", resources={"schedulerName": "volcano", "affinity": {}},
                            runPolicy={"schedulingPolicy": {"queue": "root", "priorityClass": "high"}})
    assert {error.path for error in decide(tenant, TEAM_A_LABELS, POLICIES).violations} == {
        "spec.workloadPriorityClassName", "spec.resources.schedulerName", "spec.resources.affinity",
        "spec.runPolicy.schedulingPolicy"}


@pytest.mark.parametrize("model, path", [
    ({"initCheckpoint": "s3://bert-results/team-b/secret/phase2"}, "spec.model.initCheckpoint"),
    ({"vocab": "s3://team-b-private/vocab.txt"}, "spec.model.vocab"),
])
def test_the_team_reads_only_the_shared_models_and_data_and_its_own_results(model: dict[str, Any], path: str) -> None:
    """Issue 25, item 2: another team's checkpoint or vocab, read with team-a's keys, is refused."""
    body = compliant_glue()
    body["spec"]["model"].update(model)
    [error] = decide(body, TEAM_A_LABELS, POLICIES).violations
    assert error.path == path and "s3://bert-models/, s3://bert-data/, pvc://, s3://bert-results/team-a/" in error.message
    body["spec"]["model"]["initCheckpoint"] = "s3://bert-results/team-a/pretrain/phase2"
    body["spec"]["model"]["vocab"] = "s3://bert-models/uncased_L-24_H-1024_A-16/vocab.txt"
    assert decide(body, TEAM_A_LABELS, POLICIES).violations == ()


def test_outside_team_a_only_the_cluster_defaults_apply() -> None:
    decision = decide(example("bert-large-pretrain.yaml", namespace="ml-training"), OTHER_LABELS, POLICIES)
    assert decision.violations == () and decision.policies == ("cluster-defaults",)
    assert decision.job.spec.queue_name == "gpu-queue" and decision.job.spec.resources.workers == 4  # its own
    assert decision.job.spec.run_policy.active_deadline_seconds == 172800


def test_the_two_examples_never_conflict() -> None:
    assert conflicts(POLICIES, {"team-a": TEAM_A_LABELS, "ml-training": OTHER_LABELS}) == {}


def test_the_admin_guide_shows_the_refusal_decide_gives() -> None:
    """docs/install.md's policy section quotes the lines a tenant gets for the 4 x 8 job; decide()'s, in its order."""
    guide = (REPO / "docs" / "install.md").read_text()
    after = guide.split("`examples/bert-large-pretrain.yaml`, its namespace set to `team-a`:\n\n```text\n", 1)[1]
    quoted = after.split("\n```", 1)[0].splitlines()
    decision = decide(example("bert-large-pretrain.yaml"), TEAM_A_LABELS, POLICIES)
    assert quoted == [str(error) for error in decision.violations]

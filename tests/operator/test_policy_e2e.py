"""BertTrainingPolicies with the real operator process (webhook on) against the emulated API: defaults and forced
values reach the MPIJobs, a violating job is refused by the webhook and, with the webhook bypassed, failed by the
operator before anything is created; a policy edited later leaves running jobs alone; policies get a status."""

from __future__ import annotations

import contextlib
import copy
import json
import ssl
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from tests.chart.test_operator_access import Served, _PinnedHostConnection, chart_certificates
from tests.conftest import REPO, free_port
from tests.operator.cluster import EmulatedCluster, OperatorProcess, strict_cluster

SQUAD = yaml.safe_load((REPO / "examples" / "squad-v1.1.yaml").read_text())
TEAM = "team-a"
LABEL = {"bertoperator.io/team": "team-a"}
POLICY = {"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingPolicy", "metadata": {"name": "team-a"},
          "spec": {"namespaceSelector": {"matchLabels": LABEL},
                   "forced": {"queueName": "team-a"},
                   "defaults": {"nodeSelector": {"pool": "a100"}, "output": {"uri": "s3://bert-results/{namespace}/{name}"}},
                   "limits": {"maxGpusPerJob": 16, "allowedOutputPrefixes": ["s3://bert-results/{namespace}/"]}}}


def squad(name: str, **resources: Any) -> dict[str, Any]:
    document = copy.deepcopy(SQUAD)
    document["metadata"] = {"name": name, "namespace": TEAM}
    document["spec"]["output"]["uri"] = f"s3://bert-results/{TEAM}/{name}"
    document["spec"]["resources"].update(resources)
    return document


@contextlib.contextmanager
def webhooked_operator(workdir: Path, namespaces: dict[str, dict[str, str]], resync_seconds: float,
                       before: Callable[[EmulatedCluster], None] = lambda cluster: None) -> Iterator[Served]:
    """The strict emulated API (both CRDs, the real MPIJob CRD, `namespaces` with their labels) and the operator
    process serving its webhook over HTTPS with the chart's certificates; `before` runs once the API is up."""
    certs = workdir / "certs"
    certs.mkdir()
    ca = chart_certificates(certs)
    with strict_cluster(workdir, namespaces=namespaces, policies=True) as cluster:
        before(cluster)
        port = free_port()
        operator = OperatorProcess(cluster, "--webhook-port", str(port), "--webhook-cert-dir", str(certs),
                                   resync_seconds=resync_seconds).start()
        try:
            yield Served(cluster, operator, port, ca, cluster.strict)
        finally:
            operator.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    def add_policy(cluster: EmulatedCluster) -> None:
        cluster.custom.create_cluster_custom_object("bertoperator.io", "v1alpha1", "berttrainingpolicies", POLICY)

    with webhooked_operator(tmp_path_factory.mktemp("policy"), {TEAM: LABEL, "other": {}}, 1.0, add_policy) as served:
        yield served


def status(cluster: EmulatedCluster, name: str) -> dict[str, Any]:
    return cluster.job(TEAM, name).get("status") or {}


def mpijob(cluster: EmulatedCluster, name: str) -> dict[str, Any] | None:
    return next((m for m in cluster.mpijobs(TEAM) if m["metadata"]["name"] == name), None)


def wait_for_webhook(served: Served) -> None:
    import socket

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", served.port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"webhook never listened:\n{served.operator.output()}")


def test_the_webhook_refuses_a_job_the_policy_does_not_allow_naming_field_and_policy(served: Served) -> None:
    wait_for_webhook(served)
    admitted = served.cluster.wait(lambda: (a := served.review(squad("probe-1")))["allowed"] and a, what="an admission")
    # Admitted with what the policy gives it, as warnings kubectl prints at apply time.
    assert admitted["warnings"] == ['BertTrainingPolicy team-a sets spec.resources.nodeSelector (default): {"pool":"a100"}',
                                    "BertTrainingPolicy team-a sets spec.queueName (forced): team-a"]
    answer = served.review(squad("too-big", workers=4, gpusPerWorker=8))
    assert answer["allowed"] is False and answer["status"]["code"] == 422
    assert answer["status"]["message"] == ("spec.resources.gpusPerWorker: 8 exceeds 16 GPUs per job allowed by "
                                           "BertTrainingPolicy team-a (4 x 8 = 32)")
    elsewhere = copy.deepcopy(squad("elsewhere", workers=4, gpusPerWorker=8))
    elsewhere["metadata"]["namespace"] = "other"
    assert served.review(elsewhere)["allowed"] is True  # the policy selects team-a only


def review_policy(served: Served, policy: dict[str, Any]) -> dict[str, Any]:
    """POST an AdmissionReview of a BertTrainingPolicy to the operator's policy webhook, as the API server does."""
    uid = str(uuid.uuid4())
    resource = {"group": "bertoperator.io", "version": "v1alpha1", "resource": "berttrainingpolicies"}
    kind = {"group": "bertoperator.io", "version": "v1alpha1", "kind": "BertTrainingPolicy"}
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": kind, "resource": resource, "requestKind": kind, "requestResource": resource,
        "name": policy["metadata"]["name"], "operation": "CREATE", "object": policy, "oldObject": None, "dryRun": False,
        "userInfo": {"username": "platform-admin", "groups": ["system:authenticated"]}}}
    connection = _PinnedHostConnection("127.0.0.1", served.port, context=ssl.create_default_context(cafile=str(served.ca)),
                                       timeout=10)
    try:
        connection.request("POST", "/validate-berttrainingpolicy", body=json.dumps(review),
                           headers={"Content-Type": "application/json"})
        answer = connection.getresponse()
        assert answer.status == 200, answer.read()
        return json.loads(answer.read())["response"]
    finally:
        connection.close()


def test_the_webhook_refuses_an_invalid_policy_with_the_field(served: Served) -> None:
    wait_for_webhook(served)
    assert review_policy(served, POLICY)["allowed"] is True
    broken = {**POLICY, "metadata": {"name": "broken"}, "spec": {"limits": {"maxGpusPerJob": -1}, "defaults": {
        "queueName": "a"}, "forced": {"queueName": "b"}}}
    refused = review_policy(served, broken)
    assert refused["allowed"] is False and refused["status"]["code"] == 422
    assert "spec.limits.maxGpusPerJob" in refused["status"]["message"]
    overlap = review_policy(served, {**broken, "spec": {**broken["spec"], "limits": {}}})  # the rule beyond the schema
    assert overlap["allowed"] is False and overlap["status"]["message"] == (
        "spec.defaults: sets spec.queueName, which spec.forced also sets: the default would never apply; keep one of them")


def test_a_job_gets_the_forced_queue_and_the_default_node_selector_and_says_so(served: Served) -> None:
    cluster = served.cluster
    cluster.apply_job(squad("fits-1"), uid="uid-fits-1")
    created = cluster.wait(lambda: mpijob(cluster, "fits-1-squad"), what="MPIJob")
    assert created["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert created["spec"]["runPolicy"]["suspend"] is True  # queued: Kueue decides when it runs
    worker = created["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]
    assert worker["nodeSelector"] == {"pool": "a100"}
    policy = cluster.wait(lambda: status(cluster, "fits-1").get("policy"), what="status.policy")
    assert policy["policies"] == ["team-a"]
    assert {(a["path"], a["how"]) for a in policy["applied"]} == {("spec.queueName", "forced"),
                                                                  ("spec.resources.nodeSelector", "default")}


def test_with_the_webhook_bypassed_the_operator_fails_a_violating_job_before_creating_anything(served: Served) -> None:
    cluster = served.cluster
    cluster.apply_job(squad("too-big-1", workers=4, gpusPerWorker=8), uid="uid-too-big-1")  # straight to the store
    failed = cluster.wait(lambda: status(cluster, "too-big-1").get("phase") == "Failed" and status(cluster, "too-big-1"),
                          what="PolicyViolation")
    reason = next(c for c in failed["conditions"] if c["type"] == "Failed")
    assert reason["reason"] == "PolicyViolation" and "BertTrainingPolicy team-a (4 x 8 = 32)" in reason["message"]
    assert mpijob(cluster, "too-big-1-squad") is None
    events = [(e["type"], e["reason"]) for e in cluster.events() if e["involved_object"]["name"] == "too-big-1"]
    assert ("Warning", "PolicyViolation") in events


def test_a_policy_edited_later_leaves_a_running_job_alone_and_the_policy_shows_what_it_selects(served: Served) -> None:
    cluster = served.cluster
    cluster.apply_job(squad("running-1"), uid="uid-running-1")
    cluster.wait(lambda: mpijob(cluster, "running-1-squad"), what="MPIJob")
    cluster.custom.patch_cluster_custom_object("bertoperator.io", "v1alpha1", "berttrainingpolicies", "team-a",
                                               {"spec": {"limits": {"maxGpusPerJob": 1}}})  # generation 2 (strict layer)
    cluster.set_mpijob_conditions(TEAM, "running-1-squad", "Created", "Running")
    cluster.custom.patch_namespaced_custom_object("kubeflow.org", "v2beta1", TEAM, "mpijobs", "running-1-squad",
                                                  {"spec": {"runPolicy": {"suspend": False}}})  # Kueue admitted it
    cluster.wait(lambda: status(cluster, "running-1").get("phase") == "Running", what="Running")
    cluster.wait_syncs("running-1-squad", 2)  # two syncs (resyncs, 1 s apart) with the tightened policy
    assert status(cluster, "running-1")["phase"] == "Running"
    policy = cluster.wait(lambda: (p := cluster.custom.get_cluster_custom_object(
        "bertoperator.io", "v1alpha1", "berttrainingpolicies", "team-a").get("status") or {}).get("observedGeneration") == 2
        and p, what="the policy's status")
    assert policy["namespaces"] == 1 and policy["jobs"] >= 3 and policy["conflicts"] == []
    assert policy["conditions"][0]["type"] == "Valid" and policy["conditions"][0]["status"] == "True"


def test_a_job_without_output_is_stored_and_gets_the_policys_default_output(served: Served) -> None:
    """The CRD leaves spec.output optional (the strict layer enforces `required` as declared): the policy gives it."""
    wait_for_webhook(served)
    document = squad("no-output-1", workers=1, gpusPerWorker=1)  # within the policy as the test above tightened it
    del document["spec"]["output"]
    admitted = served.review(document)
    assert admitted["allowed"] is True and \
        "BertTrainingPolicy team-a sets spec.output.uri (default): s3://bert-results/team-a/no-output-1" in admitted["warnings"]
    cluster = served.cluster
    cluster.apply_job(document, uid="uid-no-output-1")
    created = cluster.wait(lambda: mpijob(cluster, "no-output-1-squad"), what="MPIJob")
    assert "s3://bert-results/team-a/no-output-1" in json.dumps(created["spec"])


def test_deleting_the_policy_that_forced_the_queue_leaves_the_queued_stage_to_kueue(served: Served) -> None:
    cluster = served.cluster
    cluster.apply_job(squad("queued-1", workers=1, gpusPerWorker=1), uid="uid-queued-1")
    cluster.wait(lambda: status(cluster, "queued-1").get("phase") == "Queued", what="Queued")
    policies = ("bertoperator.io", "v1alpha1", "berttrainingpolicies")
    cluster.custom.delete_cluster_custom_object(*policies, "team-a")
    try:
        # The first reconcile after the delete drops status.policy; in that same reconcile the stage stays Kueue's.
        after = cluster.wait(lambda: "policy" not in (s := status(cluster, "queued-1")) and s, what="a reconcile without the policy")
        assert after["phase"] == "Queued" and after["stages"][0]["queueName"] == "team-a"
        assert mpijob(cluster, "queued-1-squad")["spec"]["runPolicy"]["suspend"] is True
    finally:
        cluster.custom.create_cluster_custom_object(*policies, POLICY)

"""The reconciler's serving step against the recording fake cluster: each sync's calls, status.serving and Events.

In the style of test_reconcile.py: a case sets up what the API server holds (the MPIJob's and the InferenceService's
conditions, as the MPI Operator and KServe's controller write them), runs one sync and asserts the exact calls.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bert_operator.policy import PolicyInput, parse_policy
from bert_operator.reconcile import Reconciler
from bert_operator.reconcile.serve_step import LAST_APPLIED_ANNOTATION
from tests.operator.fakes import GLUE, NOW, UID, FakeCluster, condition, job, sync

SERVED = {**GLUE, "serve": {"minReplicas": 1, "maxReplicas": 2}}
URL = "http://j.ml.example.com"


@pytest.fixture()
def reconciler(cluster: FakeCluster) -> Reconciler:
    return Reconciler(api=cluster, events=cluster, clock=lambda: NOW)


def succeeded(reconciler: Reconciler, cluster: FakeCluster, spec: dict[str, Any]) -> dict[str, Any]:
    """A job whose one stage was created and runs (calls and Events so far forgotten); its MPIJob now Succeeded."""
    body = job(spec)
    sync(reconciler, body)
    cluster.set_conditions("j-glue", "Created", "Running")
    sync(reconciler, body)
    cluster.set_conditions("j-glue", "Created", "Running", "Succeeded")
    cluster.calls.clear()
    cluster.events.clear()
    return body


def serving(reconciler: Reconciler, cluster: FakeCluster, spec: dict[str, Any] = SERVED) -> dict[str, Any]:
    """A served job whose InferenceService was made and is ready; calls and Events forgotten."""
    body = succeeded(reconciler, cluster, spec)
    sync(reconciler, body)
    cluster.set_isvc_conditions("j", URL, PredictorReady="True", TransformerReady="True", Ready="True")
    sync(reconciler, body)
    cluster.calls.clear()
    cluster.events.clear()
    return body


def changed(body: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The job after the user applied `spec` (a new generation), with the status the operator wrote."""
    return {**copy.deepcopy(body), "metadata": {**body["metadata"], "generation": body["metadata"]["generation"] + 1},
            "spec": copy.deepcopy(spec)}


def reasons_of(cluster: FakeCluster) -> list[str]:
    return [reason for _, reason, _ in cluster.events]


def test_a_served_job_that_succeeds_creates_its_inference_service_and_stays_succeeded(
        reconciler: Reconciler, cluster: FakeCluster) -> None:
    body = succeeded(reconciler, cluster, SERVED)
    written = sync(reconciler, body)
    assert cluster.calls == [("get", "mpijobs", "j-glue"), ("create", "inferenceservices", "j"), ("patch", "status", "j")]
    assert written is not None and written["phase"] == "Succeeded"
    assert written["serving"] == {
        "inferenceService": "j", "model": "mrpc", "modelVersion": "1 (glue)",
        "storageUri": "s3://results/glue/glue/export/triton", "appliedHash": written["serving"]["appliedHash"],
        "ready": False, "conditions": [], "reason": "KServe has not reported on it yet"}
    isvc = cluster.isvcs["j"]
    [owner] = isvc["metadata"]["ownerReferences"]
    assert owner["uid"] == UID and owner["controller"] is True
    assert LAST_APPLIED_ANNOTATION in isvc["metadata"]["annotations"]
    assert reasons_of(cluster) == ["Succeeded", "InferenceServiceCreated"]
    assert "finalizers" not in body["metadata"]


def test_status_serving_follows_the_inference_service_conditions(reconciler: Reconciler, cluster: FakeCluster) -> None:
    body = succeeded(reconciler, cluster, SERVED)
    sync(reconciler, body)
    cluster.calls.clear()
    cluster.events.clear()
    cluster.set_isvc_conditions("j", URL, PredictorReady="True", TransformerReady="False", Ready="False")
    written = sync(reconciler, body)
    assert cluster.calls == [("get", "inferenceservices", "j"), ("patch", "status", "j")]
    assert written is not None and written["serving"]["ready"] is False and written["serving"]["url"] == URL
    assert written["serving"]["reason"] == "TransformerReady: TransformerReadyFailed: TransformerReady is False"
    assert cluster.events == []  # never ready yet: nothing stopped

    cluster.set_isvc_conditions("j", URL, PredictorReady="True", TransformerReady="True", Ready="True")
    written = sync(reconciler, body)
    assert written is not None and written["serving"]["ready"] is True and "reason" not in written["serving"]
    assert [c["type"] for c in written["serving"]["conditions"]] == ["PredictorReady", "TransformerReady", "Ready"]
    assert written["phase"] == "Succeeded" and condition(written, "Succeeded")["status"] == "True"
    assert cluster.events == [("Normal", "ServingReady", f"InferenceService j is ready at {URL}")]

    cluster.calls.clear()
    cluster.events.clear()
    assert sync(reconciler, body) is None  # nothing changed: one read, no write, no Event
    assert cluster.calls == [("get", "inferenceservices", "j")] and cluster.events == []

    cluster.set_isvc_conditions("j", URL, PredictorReady="False", TransformerReady="True", Ready="False")
    written = sync(reconciler, body)
    assert written is not None and written["serving"]["ready"] is False
    assert cluster.events == [("Warning", "ServingNotReady", "InferenceService j is not ready: PredictorReady: "
                                                             "PredictorReadyFailed: PredictorReady is False")]


def test_removing_spec_serve_deletes_the_inference_service_and_keeps_the_job_succeeded(
        reconciler: Reconciler, cluster: FakeCluster) -> None:
    body = serving(reconciler, cluster)
    body = changed(body, GLUE)
    written = sync(reconciler, body)
    assert cluster.calls == [("get", "inferenceservices", "j"), ("delete", "inferenceservices", "j"),
                             ("patch", "status", "j")]
    assert written is not None and "serving" not in written and cluster.isvcs == {}
    assert written["phase"] == "Succeeded" and condition(written, "SpecApplied")["status"] == "True"
    assert written["observedGeneration"] == 2
    assert cluster.events == [("Normal", "InferenceServiceDeleted", "InferenceService j deleted: spec.serve was removed")]
    cluster.calls.clear()
    assert sync(reconciler, body) is None and cluster.calls == []  # done: a finished, unserved job needs no work


def test_a_changed_spec_serve_patches_only_what_it_set_and_adding_it_later_serves(
        reconciler: Reconciler, cluster: FakeCluster) -> None:
    body = serving(reconciler, cluster)
    body = changed(body, {**GLUE, "serve": {"replicas": 3}})
    written = sync(reconciler, body)
    assert cluster.calls == [("get", "inferenceservices", "j"), ("patch", "inferenceservices", "j"),
                             ("patch", "status", "j")]
    predictor = cluster.isvcs["j"]["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (3, 3)
    assert cluster.isvcs["j"]["status"]["conditions"]  # KServe's status and fields are left alone
    assert written is not None and written["serving"]["ready"] is True and written["phase"] == "Succeeded"
    assert reasons_of(cluster) == ["InferenceServiceUpdated"]

    unserved = FakeCluster()  # a job that ran without serve, served later
    later = Reconciler(api=unserved, events=unserved, clock=lambda: NOW)
    plain = succeeded(later, unserved, GLUE)
    sync(later, plain)
    assert unserved.isvcs == {} and "serving" not in plain["status"]
    plain = changed(plain, SERVED)
    unserved.calls.clear()
    written = sync(later, plain)
    assert unserved.calls == [("get", "inferenceservices", "j"), ("create", "inferenceservices", "j"),
                              ("patch", "status", "j")]
    assert written is not None and written["serving"]["model"] == "mrpc"
    assert condition(written, "SpecApplied")["status"] == "True"


def test_kserve_missing_or_a_refusal_is_said_once_and_the_job_stays_succeeded(
        reconciler: Reconciler, cluster: FakeCluster) -> None:
    cluster.kserve_installed = False
    body = succeeded(reconciler, cluster, SERVED)
    written = sync(reconciler, body)
    assert written is not None and written["phase"] == "Succeeded" and written["serving"]["ready"] is False
    assert "KServe" not in written["serving"]["reason"] or "not served" in written["serving"]["reason"]
    assert [e for e in cluster.events if e[1] == "ServingRefused"] == [
        ("Warning", "ServingRefused", "the API server refused InferenceService j: the InferenceService API "
                                      "(serving.kserve.io/v1beta1) is not served")]
    cluster.events.clear()
    cluster.calls.clear()
    assert sync(reconciler, body) is None  # tried again; the same refusal is not said again
    assert cluster.calls == [("get", "inferenceservices", "j"), ("create", "inferenceservices", "j")]
    assert cluster.events == []


def test_an_inference_service_of_the_name_that_is_not_the_jobs_is_left_alone(
        reconciler: Reconciler, cluster: FakeCluster) -> None:
    cluster.isvcs["j"] = {"metadata": {"name": "j", "namespace": "ml", "uid": "someone-elses"}, "spec": {}}
    body = succeeded(reconciler, cluster, SERVED)
    written = sync(reconciler, body)
    assert ("patch", "inferenceservices", "j") not in cluster.calls and ("delete", "inferenceservices", "j") not in cluster.calls
    assert written is not None and written["serving"]["reason"].startswith("an InferenceService named j exists and "
                                                                             "is not this job's")
    assert ("Warning", "ServingRefused") in [(kind, reason) for kind, reason, _ in cluster.events]


def test_a_policys_serving_limits_hold_the_inference_service_of_a_started_job(cluster: FakeCluster) -> None:
    """A policy's limits bind a started job's spec.serve too: it may be added after the job ran (the webhook and the
    job's own start check only what the job held then)."""
    policy = parse_policy({"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingPolicy",
                           "metadata": {"name": "small"}, "spec": {"limits": {"maxServeReplicas": 1}}})
    reconciler = Reconciler(api=cluster, events=cluster, clock=lambda: NOW,
                            policies=lambda namespace: PolicyInput({}, (policy,)))
    body = succeeded(reconciler, cluster, GLUE)
    sync(reconciler, body)
    written = sync(reconciler, changed(body, {**GLUE, "serve": {"replicas": 4}}))  # served after it ran
    assert cluster.isvcs == {} and ("create", "inferenceservices", "j") not in cluster.calls
    assert written is not None and written["phase"] == "Succeeded"
    assert written["serving"]["reason"] == ("spec.serve breaks a BertTrainingPolicy: spec.serve.replicas: 4 exceeds 1 "
                                            "replicas allowed by BertTrainingPolicy small")

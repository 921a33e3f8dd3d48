"""The strict layer itself: each real-API-server behaviour it claims, against kmock through the real client."""

from __future__ import annotations

import copy
import json
import math
from typing import Any, Iterator

import kubernetes
import pytest
import yaml

from tests.conftest import REPO
from tests.operator.cluster import EmulatedCluster, strict_cluster
from tests.operator.kueue_shim import webhook
from tests.operator.strict import FOREGROUND_SECONDS

SQUAD = yaml.safe_load((REPO / "examples" / "squad-v1.1.yaml").read_text())
GROUP, VERSION, PLURAL = "bertoperator.io", "v1alpha1", "berttrainingjobs"


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedCluster]:
    with strict_cluster(tmp_path_factory.mktemp("strict"), admission=[webhook]) as running:
        yield running


def job(name: str) -> dict[str, Any]:
    body = copy.deepcopy(SQUAD)
    body["metadata"] = {"name": name, "namespace": "strict"}
    return body


def create(cluster: EmulatedCluster, body: dict[str, Any]) -> dict[str, Any]:
    # Decoded here: kmock answers a create with 200, which the generated client does not decode.
    answer = cluster.custom.create_namespaced_custom_object(GROUP, VERSION, "strict", PLURAL, body, _preload_content=False)
    return json.loads(answer.data)


def test_numbers_come_back_as_go_stores_them_and_generation_starts_at_one(strict: EmulatedCluster) -> None:
    created = create(strict, job("numbers"))
    assert created["spec"]["task"]["squad"]["epochs"] == 2 and isinstance(created["spec"]["task"]["squad"]["epochs"], int)
    assert created["metadata"]["generation"] == 1


def test_non_finite_numbers_are_refused_and_large_ones_come_back_as_go_writes_them(strict: EmulatedCluster) -> None:
    """Go's decoder refuses a bare NaN (400; the client's json writes one); an integer beyond int64 becomes a
    float64, and a float64 comes back without an exponent below 1e21 (an integer to a client), with one above."""
    create(strict, job("big-numbers"))
    for bad in (math.nan, math.inf, 10**400):
        with pytest.raises(kubernetes.client.ApiException) as refused:
            strict.custom.patch_namespaced_custom_object_status(GROUP, VERSION, "strict", PLURAL, "big-numbers", {
                "status": {"results": {"evalLoss": bad}}})
        assert refused.value.status == 400
    written = strict.custom.patch_namespaced_custom_object_status(GROUP, VERSION, "strict", PLURAL, "big-numbers", {
        "status": {"results": {"a": 1e300, "b": 1e20, "c": 2**63 + 1, "d": 2.5, "e": 2.0}}})["status"]["results"]
    assert written == {"a": 1e300, "b": 10**20, "c": 2**63, "d": 2.5, "e": 2}
    assert isinstance(written["a"], float) and isinstance(written["e"], int)


def test_unknown_fields_of_spec_and_status_are_pruned(strict: EmulatedCluster) -> None:
    body = job("pruning")
    body["spec"]["resources"]["gpuType"] = "a100"  # not in the schema
    assert "gpuType" not in create(strict, body)["spec"]["resources"]
    written = strict.custom.patch_namespaced_custom_object_status(GROUP, VERSION, "strict", PLURAL, "pruning", {
        "status": {"phase": "Running", "bogus": 1, "progress": {"step": 3, "mlmAccuracy": 0.5, "madeUp": True}}})
    assert written["status"] == {"phase": "Running", "progress": {"step": 3, "mlmAccuracy": 0.5}}


def test_generation_moves_only_with_the_spec_and_each_path_writes_only_its_part(strict: EmulatedCluster) -> None:
    create(strict, job("generations"))
    status = strict.custom.patch_namespaced_custom_object_status(GROUP, VERSION, "strict", PLURAL, "generations", {
        "status": {"phase": "Pending"}, "spec": {"xla": False}})
    assert status["metadata"]["generation"] == 1 and status["spec"]["xla"] is True  # /status ignores the spec
    spec = strict.custom.patch_namespaced_custom_object(GROUP, VERSION, "strict", PLURAL, "generations", {
        "spec": {"xla": False}, "status": {"phase": "Failed"}})
    assert spec["metadata"]["generation"] == 2 and spec["status"] == {"phase": "Pending"}  # the object ignores status
    same = strict.custom.patch_namespaced_custom_object(GROUP, VERSION, "strict", PLURAL, "generations", {
        "metadata": {"labels": {"team": "a"}}})
    assert same["metadata"]["generation"] == 2


def test_objects_that_break_the_crd_schema_are_422(strict: EmulatedCluster) -> None:
    body = job("invalid")
    body["spec"]["resources"]["workers"] = 0
    with pytest.raises(kubernetes.client.ApiException) as refused:
        create(strict, body)
    assert refused.value.status == 422
    assert "spec.resources.workers" in json.loads(refused.value.body)["message"]
    mpijob = {"apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob", "metadata": {"name": "m", "namespace": "strict"},
              "spec": {"mpiReplicaSpecs": {}, "slotsPerWorker": "eight"}}
    with pytest.raises(kubernetes.client.ApiException) as refused:
        strict.custom.create_namespaced_custom_object("kubeflow.org", "v2beta1", "strict", "mpijobs", mpijob)
    assert refused.value.status == 422 and "slotsPerWorker" in json.loads(refused.value.body)["message"]
    assert strict.mpijobs("strict") == []  # nothing stored, unlike kmock alone


def mpijob(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob",
            "metadata": {"name": name, "namespace": "strict", "labels": labels or {}},
            "spec": {"mpiReplicaSpecs": {}, "runPolicy": {"suspend": False}}}


def make(cluster: EmulatedCluster, body: dict[str, Any]) -> dict[str, Any]:
    answer = cluster.custom.create_namespaced_custom_object("kubeflow.org", "v2beta1", "strict", "mpijobs", body,
                                                            _preload_content=False)
    return json.loads(answer.data)


def test_created_objects_get_a_uid_and_mutating_admission_runs(strict: EmulatedCluster) -> None:
    queued = make(strict, mpijob("queued", {"kueue.x-k8s.io/queue-name": "team-a"}))
    plain = make(strict, mpijob("plain"))
    assert queued["metadata"]["uid"] and queued["metadata"]["uid"] != plain["metadata"]["uid"]
    assert queued["metadata"]["creationTimestamp"]
    assert queued["spec"]["runPolicy"]["suspend"] is True and plain["spec"]["runPolicy"]["suspend"] is False


def test_a_delete_honours_the_uid_precondition_and_foreground_propagation(strict: EmulatedCluster) -> None:
    created = make(strict, mpijob("doomed"))
    wrong = kubernetes.client.V1DeleteOptions(preconditions=kubernetes.client.V1Preconditions(uid="someone-else"))
    with pytest.raises(kubernetes.client.ApiException) as refused:
        strict.custom.delete_namespaced_custom_object("kubeflow.org", "v2beta1", "strict", "mpijobs", "doomed", body=wrong)
    assert refused.value.status == 409
    options = kubernetes.client.V1DeleteOptions(propagation_policy="Foreground",
                                                preconditions=kubernetes.client.V1Preconditions(uid=created["metadata"]["uid"]))
    answer = strict.custom.delete_namespaced_custom_object("kubeflow.org", "v2beta1", "strict", "mpijobs", "doomed", body=options)
    assert answer["metadata"]["deletionTimestamp"] and answer["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert any(m["metadata"]["name"] == "doomed" for m in strict.mpijobs("strict"))  # still there, being deleted
    strict.wait(lambda: not any(m["metadata"]["name"] == "doomed" for m in strict.mpijobs("strict")),
                timeout=10 * FOREGROUND_SECONDS + 5, what="the object gone after its dependents")


def test_a_list_with_a_label_selector_answers_only_the_matching_objects(strict: EmulatedCluster) -> None:
    make(strict, mpijob("team-a-1", {"team": "a", "tier": "gold"}))
    make(strict, mpijob("team-b-1", {"team": "b"}))
    names = lambda selector: sorted(m["metadata"]["name"] for m in strict.custom.list_namespaced_custom_object(  # noqa: E731
        "kubeflow.org", "v2beta1", "strict", "mpijobs", label_selector=selector)["items"])
    assert names("team=a") == ["team-a-1"]
    assert names("team!=a,team") == ["team-b-1"]
    assert names("team=a,!tier") == []


def test_a_write_over_three_mebibytes_is_413_as_the_api_server_answers_it(strict: EmulatedCluster) -> None:
    create(strict, job("huge-status"))
    big = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "InvalidSpec",
                                      "message": "x" * (3 * 1024 * 1024), "lastTransitionTime": "2026-12-01T10:00:00Z"}]}}
    with pytest.raises(kubernetes.client.ApiException) as refused:
        strict.custom.patch_namespaced_custom_object_status(GROUP, VERSION, "strict", PLURAL, "huge-status", big)
    answer = json.loads(refused.value.body)
    assert refused.value.status == 413 and answer["reason"] == "RequestEntityTooLarge"
    assert answer["message"] == "Request entity too large: limit is 3145728"
    big["status"]["conditions"][0]["message"] = "x" * (512 * 1024)
    strict.custom.patch_namespaced_custom_object_status(GROUP, VERSION, "strict", PLURAL, "huge-status", big)


def test_a_create_in_a_namespace_being_deleted_is_403_namespace_terminating(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The NamespaceLifecycle admission plugin's answer, for core objects and custom resources alike; writes to
    objects that exist still pass (the namespace controller deletes them)."""
    with strict_cluster(tmp_path_factory.mktemp("terminating"), namespaces={"going": {}}) as running:
        server = running.strict
        core = kubernetes.client.CoreV1Api(running.client)
        kept = {**job("kept"), "metadata": {"name": "kept", "namespace": "going"}}
        before = running.custom.create_namespaced_custom_object(GROUP, VERSION, "going", PLURAL, kept,
                                                               _preload_content=False)
        assert before.status in (200, 201)
        server.terminate("going")
        namespace = json.loads(core.read_namespace("going", _preload_content=False).data)
        assert namespace["status"]["phase"] == "Terminating" and namespace["metadata"]["deletionTimestamp"]
        event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "kept.1", "namespace": "going"},
                 "involvedObject": {"kind": "BertTrainingJob", "name": "kept", "namespace": "going"},
                 "type": "Normal", "reason": "Pending", "message": "m"}
        with pytest.raises(kubernetes.client.ApiException) as refused:
            core.create_namespaced_event("going", event)
        answer = json.loads(refused.value.body)
        assert (refused.value.status, answer["reason"]) == (403, "Forbidden")
        assert answer["message"] == ('events "kept.1" is forbidden: unable to create new content in namespace going '
                                     "because it is being terminated")
        assert answer["details"]["causes"] == [{"reason": "NamespaceTerminating", "type": "NamespaceTerminating",
                                                "message": "namespace going is being terminated",
                                                "field": "metadata.namespace"}]
        with pytest.raises(kubernetes.client.ApiException) as refused:
            running.custom.create_namespaced_custom_object("kubeflow.org", "v2beta1", "going", "mpijobs", {
                **mpijob("m"), "metadata": {"name": "m", "namespace": "going"}})
        assert refused.value.status == 403 and json.loads(refused.value.body)["message"].startswith(
            'mpijobs.kubeflow.org "m" is forbidden: unable to create new content in namespace going')
        running.custom.patch_namespaced_custom_object_status(GROUP, VERSION, "going", PLURAL, "kept",
                                                             {"status": {"phase": "Pending"}})


def test_the_emulators_warnings_name_the_object_by_uid_as_the_mpi_operator_does(strict: EmulatedCluster) -> None:
    made = make(strict, mpijob("warned"))
    posted = strict.post_warning("strict", "MPIJob", "warned", "FailedCreatePod", "quota")
    assert posted["involvedObject"]["uid"] == made["metadata"]["uid"] and posted["lastTimestamp"]


def test_a_batch_job_is_checked_against_kubernetes_job_schema_and_given_a_uid(strict: EmulatedCluster) -> None:
    """A sweep's cleanup Job is a built-in kind: the strict layer checks its create as the API server does (422
    naming the field) and gives it a uid, which the operator's owner checks and the fake Job controller's writes
    rely on."""
    batch = kubernetes.client.BatchV1Api(strict.client)
    body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "cleanup", "namespace": "strict"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "c", "image": "busybox", "command": ["true"]}]}}}}
    broken = copy.deepcopy(body)
    broken["spec"]["backofLimit"] = 2  # a typo: Kubernetes' strict schema has no such field
    with pytest.raises(kubernetes.client.ApiException) as refused:
        batch.create_namespaced_job("strict", broken, _preload_content=False)
    assert refused.value.status == 422 and "backofLimit" in refused.value.body
    created = json.loads(batch.create_namespaced_job("strict", body, _preload_content=False).data)
    assert created["metadata"]["uid"] and created["metadata"]["creationTimestamp"]
    assert batch.read_namespaced_job("cleanup", "strict").metadata.uid == created["metadata"]["uid"]

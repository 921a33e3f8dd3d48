"""The strict layer itself: each real-API-server behaviour it claims, against kmock through the real client."""

from __future__ import annotations

import copy
import json
from typing import Any, Iterator

import kubernetes
import pytest
import yaml

from bert_operator.api.crd import crd
from tests.conftest import MPIJOB_CRD, REPO
from tests.operator.cluster import EmulatedCluster
from tests.operator.strict import StrictApiServer, load_crd

SQUAD = yaml.safe_load((REPO / "examples" / "squad-v1.1.yaml").read_text())
GROUP, VERSION, PLURAL = "bertoperator.io", "v1alpha1", "berttrainingjobs"


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedCluster]:
    if not MPIJOB_CRD.exists():
        pytest.skip(f"MPIJob CRD not found at {MPIJOB_CRD}")
    with EmulatedCluster(tmp_path_factory.mktemp("strict")) as running:
        server = StrictApiServer(running.url, {"berttrainingjobs": crd(), "mpijobs": load_crd(MPIJOB_CRD)})
        running.connect(running.call(server.start))
        yield running
        running.call(server.stop)


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

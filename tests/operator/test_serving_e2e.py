"""A served MRPC job end to end: the real operator process, the API emulator behind the strict layer with KServe's real
InferenceService CRD (../shared/crds), and a fake KServe controller that sets the InferenceService's conditions and URL
as KServe's does."""

from __future__ import annotations

import copy
import time
from typing import Any, Iterator

import kubernetes
import pytest
import yaml

from tests.conftest import REPO
from tests.operator.cluster import EmulatedCluster, OperatorProcess
from tests.schemas import inference_service_errors

SERVE_MRPC = yaml.safe_load((REPO / "examples" / "serve-mrpc.yaml").read_text())
NS = SERVE_MRPC["metadata"]["namespace"]
#: `cluster` (conftest.py): the strict layer knows KServe's InferenceService CRD too: a create or patch its schema
#: refuses is answered 422, as a real API server with KServe installed answers it.
EMULATED: dict[str, Any] = {"kserve": True}


@pytest.fixture(scope="module")
def operator(emulated: EmulatedCluster) -> Iterator[OperatorProcess]:
    process = OperatorProcess(emulated).start()
    yield process
    process.stop()


class FakeKServe:
    """KServe's controller, as far as the operator can see it: it writes an InferenceService's status (conditions in
    Knative's shape, the URL once the ingress is ready) through the status subresource."""

    def __init__(self, cluster: EmulatedCluster) -> None:
        self.cluster = cluster

    def report(self, name: str, *, predictor: bool, transformer: bool) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        ready = predictor and transformer

        def condition(kind: str, true: bool) -> dict[str, Any]:
            if true:
                return {"type": kind, "status": "True", "lastTransitionTime": now}
            return {"type": kind, "status": "False", "reason": "RevisionMissing", "lastTransitionTime": now,
                    "message": f"Revision \"{name}-{kind[:-5].lower()}-00001\" failed with message: 0/3 nodes available."}

        status: dict[str, Any] = {
            "conditions": [condition("IngressReady", ready), condition("PredictorReady", predictor),
                           condition("Ready", ready), condition("TransformerReady", transformer)],
            "observedGeneration": 1, "deploymentMode": "Serverless",
            "modelStatus": {"transitionStatus": "UpToDate" if predictor else "InProgress",
                            "states": {"activeModelState": "Loaded" if predictor else "Loading"}},
        }
        if ready:
            status["url"] = f"http://{name}.{NS}.example.com"
            status["address"] = {"url": f"http://{name}-transformer.{NS}.svc.cluster.local"}
        self.cluster.custom.patch_namespaced_custom_object_status("serving.kserve.io", "v1beta1", NS, "inferenceservices",
                                                                  name, {"status": status})


def serving(cluster: EmulatedCluster, name: str) -> dict[str, Any]:
    return (cluster.job(NS, name).get("status") or {}).get("serving") or {}


def test_a_served_mrpc_job_gets_an_inference_service_and_status_serving_follows_it(
        cluster: EmulatedCluster, operator: OperatorProcess) -> None:
    job = copy.deepcopy(SERVE_MRPC)
    cluster.apply_job(job, uid="uid-serve-1")
    cluster.wait(lambda: any(m["metadata"]["name"] == "serve-mrpc-glue" for m in cluster.mpijobs(NS)), what="MPIJob")
    assert cluster.inference_services(NS) == []  # nothing is served before the job succeeded
    cluster.set_mpijob_conditions(NS, "serve-mrpc-glue", "Created", "Running", "Succeeded")
    [isvc] = cluster.wait(lambda: cluster.inference_services(NS), what="the InferenceService")
    # The strict layer took it (KServe's CRD schema), and it is the one the renderer makes.
    assert cluster.strict.refused == [] and inference_service_errors(isvc) == []
    assert isvc["metadata"]["ownerReferences"][0]["uid"] == "uid-serve-1"
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "s3://bert-results/serve-mrpc/glue/export/triton"
    assert isvc["spec"]["transformer"]["containers"][0]["command"][3:5] == ["serve", "transformer"]
    broken = {**copy.deepcopy(isvc), "metadata": {"name": "broken", "namespace": NS}}
    broken["spec"]["predictor"]["minReplicas"] = "one"
    with pytest.raises(kubernetes.client.ApiException) as refused:  # (the strict layer does check the schema)
        cluster.custom.create_namespaced_custom_object("serving.kserve.io", "v1beta1", NS, "inferenceservices", broken)
    assert refused.value.status == 422 and "spec.predictor.minReplicas" in refused.value.body
    first = cluster.wait(lambda: serving(cluster, "serve-mrpc").get("inferenceService") and serving(cluster, "serve-mrpc"),
                         what="status.serving")
    assert first["ready"] is False and first["model"] == "mrpc"

    kserve = FakeKServe(cluster)
    kserve.report("serve-mrpc", predictor=True, transformer=False)
    waiting = cluster.wait(lambda: (s := serving(cluster, "serve-mrpc")).get("conditions") and s, what="conditions")
    assert waiting["ready"] is False  # the component that is not ready is named, not the ingress that waits for it
    assert waiting["reason"] == ('TransformerReady: RevisionMissing: Revision "serve-mrpc-transformer-00001" failed '
                                 'with message: 0/3 nodes available.')

    kserve.report("serve-mrpc", predictor=True, transformer=True)
    ready = cluster.wait(lambda: (s := serving(cluster, "serve-mrpc")).get("ready") and s, what="ready")
    assert ready["url"] == f"http://serve-mrpc.{NS}.example.com"
    assert {c["type"]: c["status"] for c in ready["conditions"]} == {
        "IngressReady": "True", "PredictorReady": "True", "Ready": "True", "TransformerReady": "True"}
    status = cluster.job(NS, "serve-mrpc")["status"]
    assert status["phase"] == "Succeeded"
    reasons = [e["reason"] for e in cluster.events() if e["involved_object"]["name"] == "serve-mrpc"]
    assert "InferenceServiceCreated" in reasons and "ServingReady" in reasons

    # spec.serve removed: the InferenceService goes, status.serving with it, and the job stays Succeeded.
    cluster.custom.patch_namespaced_custom_object("bertoperator.io", "v1alpha1", NS, "berttrainingjobs", "serve-mrpc",
                                                  {"spec": {"serve": None}})
    cluster.wait(lambda: cluster.inference_services(NS) == [], what="the InferenceService deleted")
    cluster.wait(lambda: "serving" not in cluster.job(NS, "serve-mrpc")["status"], what="status.serving gone")
    after = cluster.job(NS, "serve-mrpc")["status"]
    assert after["phase"] == "Succeeded"
    assert next(c for c in after["conditions"] if c["type"] == "SpecApplied")["status"] == "True"

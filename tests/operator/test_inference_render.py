"""spec.serve: its rules, a policy's defaults and limits for it, and the InferenceService it renders, checked against
KServe's real InferenceService CRD (../shared/crds) as the MPIJobs are against the MPI Operator's."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import kopf
import pytest
import yaml

from bert_operator.api import SpecError
from bert_operator.api.parse import parse_job
from bert_operator.policy import PolicyInput, decide, parse_policy
from bert_operator.webhook import serving_limits, validate_job
from bert_operator.render.inference import render_inference_service
from tests.conftest import EXAMPLES, REPO, shared_file
from tests.schemas import inference_service_errors

SERVE_MRPC = yaml.safe_load((REPO / "examples" / "serve-mrpc.yaml").read_text())
SQUAD = yaml.safe_load((REPO / "examples" / "squad-v1.1.yaml").read_text())
GLUE_PVC = yaml.safe_load((REPO / "examples" / "glue-mrpc.yaml").read_text())
PRETRAIN = yaml.safe_load((REPO / "examples" / "tiny-pretrain-s3.yaml").read_text())


def served(document: dict[str, Any], uid: str | None = "uid-1", **serve: Any) -> dict[str, Any]:
    copied = copy.deepcopy(document)
    if uid:
        copied["metadata"]["uid"] = uid
    if serve:
        copied["spec"]["serve"] = serve
    return copied


def errors_of(document: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as refused:
        parse_job(document)
    return [f"{e.path}: {e.message}" for e in refused.value.errors]


def test_a_served_mrpc_job_renders_an_inference_service_the_kserve_crd_accepts() -> None:
    isvc = render_inference_service(parse_job(served(SERVE_MRPC)))
    assert inference_service_errors(isvc) == []
    assert (isvc["apiVersion"], isvc["kind"], isvc["metadata"]["name"]) == ("serving.kserve.io/v1beta1",
                                                                          "InferenceService", "serve-mrpc")
    [owner] = isvc["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("BertTrainingJob", "uid-1", True)
    predictor = isvc["spec"]["predictor"]
    assert predictor["model"]["modelFormat"] == {"name": "tensorflow", "version": "2"}
    assert predictor["model"]["runtime"] == "kserve-tritonserver" and predictor["model"]["protocolVersion"] == "v2"
    assert predictor["model"]["storageUri"] == "s3://bert-results/serve-mrpc/glue/export/triton"
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 3)
    assert predictor["model"]["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"},
                                               "limits": {"cpu": "2", "memory": "4Gi"}}
    assert predictor["serviceAccountName"] == "kserve-s3"
    [transformer] = isvc["spec"]["transformer"]["containers"]
    assert transformer["command"] == [
        "python", "-m", "bert_trainer", "serve", "transformer",
        "--assets_uri", "s3://bert-results/serve-mrpc/glue/export/triton/mrpc/assets", "--predictor_model", "mrpc"]
    assert "args" not in transformer  # KServe appends --model_name, --predictor_host and --http_port there
    # The S3 keys only by reference, as the training stage's MPIJob has them.
    env = {item["name"]: item for item in transformer["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"] == {"secretKeyRef": {"name": "bert-s3", "key": "AWS_ACCESS_KEY_ID"}}
    assert env["AWS_ENDPOINT_URL_S3"]["value"] == "https://minio.storage.svc:9000"
    assert all("value" not in item for name, item in env.items() if name.startswith("AWS_") and "KEY" in name)
    assert predictor["model"]["env"] == [item for item in transformer["env"] if item["name"].startswith("AWS_")]


def test_the_predictor_is_one_kserves_triton_runtime_serves() -> None:
    """The model format, version and protocol are among those KServe's ClusterServingRuntime for Triton declares
    (../shared/crds/kserve-tritonserver-runtime.yaml), under its name; the repository is where it loads models from."""
    runtime = yaml.safe_load(shared_file("crds/kserve-tritonserver-runtime.yaml").read_text())
    model = render_inference_service(parse_job(served(SERVE_MRPC)))["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert {"name": model["modelFormat"]["name"], "version": model["modelFormat"]["version"]} in [
        {"name": f["name"], "version": f["version"]} for f in runtime["spec"]["supportedModelFormats"]]
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    assert "--model-store=/mnt/models" in runtime["spec"]["containers"][0]["args"]


def test_squad_and_the_python_runtime_render_a_valid_inference_service() -> None:
    isvc = render_inference_service(parse_job(served(SQUAD, replicas=2, runtime="python")))
    assert inference_service_errors(isvc) == []
    predictor = isvc["spec"]["predictor"]
    [container] = predictor["containers"]
    assert "model" not in predictor and container["command"][3:5] == ["serve", "predictor"]
    assert container["command"][container["command"].index("--model_name") + 1] == "squad"
    assert {"name": "STORAGE_URI", "value": "s3://bert-results/squad-large/squad/export/triton"} in container["env"]
    assert isvc["spec"]["transformer"]["containers"][0]["command"][-1] == "squad"
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 2)


def test_a_job_on_a_volume_gives_the_transformer_its_claim_read_only() -> None:
    isvc = render_inference_service(parse_job(served(GLUE_PVC, tensorrt="fp16", resources={"gpus": 1})))
    assert inference_service_errors(isvc) == []
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "pvc://bert-results/glue-mrpc/glue/export/triton"
    assert isvc["spec"]["predictor"]["model"]["resources"] == {"limits": {"nvidia.com/gpu": "1"}}
    transformer = isvc["spec"]["transformer"]
    [mount] = transformer["containers"][0]["volumeMounts"]
    assert mount == {"name": "pvc-bert-results", "mountPath": "/mnt/pvc/bert-results", "readOnly": True}
    assert transformer["volumes"] == [{"name": "pvc-bert-results",
                                       "persistentVolumeClaim": {"claimName": "bert-results", "readOnly": True}}]
    assert transformer["containers"][0]["command"][6] == "/mnt/pvc/bert-results/glue-mrpc/glue/export/triton/mrpc/assets"


SERVED_EXAMPLES = [document for path in EXAMPLES for document in yaml.safe_load_all(path.read_text())
                   if document and "serve" in document["spec"]]


@pytest.mark.parametrize("document", SERVED_EXAMPLES, ids=lambda d: d["metadata"]["name"])
def test_every_served_example_renders_a_schema_valid_inference_service(document: dict[str, Any]) -> None:
    assert inference_service_errors(render_inference_service(parse_job(served(document)))) == []


def test_the_crd_check_is_not_vacuous() -> None:
    isvc = render_inference_service(parse_job(served(SERVE_MRPC)))
    isvc["spec"]["predictor"]["minReplicas"] = "one"
    isvc["spec"]["transformer"]["containers"][0]["command"] = "python -m bert_trainer"
    assert len(inference_service_errors(isvc)) == 2


def test_serve_is_refused_naming_the_field_where_it_cannot_apply() -> None:
    assert errors_of(served(PRETRAIN, replicas=1)) == [
        "spec.serve: only glue and squad jobs can be served; a pretrain job makes no model that answers requests"]
    both = errors_of(served(SERVE_MRPC, replicas=2, minReplicas=1, tensorrt="fp16"))
    assert both == ["spec.serve.minReplicas: cannot be set with replicas (a fixed count); set either replicas or "
                    "minReplicas/maxReplicas",
                    "spec.serve.resources.gpus: must be >= 1 with tensorrt: fp16 (TensorRT runs on a GPU), got 0"]
    assert errors_of(served(SERVE_MRPC, minReplicas=3, maxReplicas=2)) == [
        "spec.serve.maxReplicas: must be >= minReplicas (3), got 2"]
    assert errors_of(served(SERVE_MRPC, runtime="python", tensorrt="fp16", resources={"gpus": 1})) == [
        "spec.serve.tensorrt: fp16 needs runtime: triton (TF-TRT runs in Triton), got runtime: python"]
    no_triton = served(SERVE_MRPC)
    no_triton["spec"]["output"]["exportFormats"] = ["hf"]
    assert errors_of(no_triton) == ["spec.output.exportFormats: must list triton with spec.serve (the "
                                    "InferenceService serves <output>/export/triton/), got ['hf']"]
    assert errors_of(served(SERVE_MRPC, replicas=1000, runtime="onnx")) == [
        "spec.serve.replicas: must be <= 100, got 1000",
        "spec.serve.runtime: must be one of 'triton' or 'python', got 'onnx'"]


POLICY = {"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingPolicy", "metadata": {"name": "serving"},
          "spec": {"defaults": {"serve": {"maxReplicas": 4, "memory": "8Gi"}},
                   "limits": {"maxServeReplicas": 4, "maxServeGpus": 0}}}


def test_a_policy_gives_serve_defaults_only_to_served_jobs_and_limits_them() -> None:
    policy = parse_policy(POLICY)
    plain = decide(served(SQUAD, uid=None), {}, [policy])
    assert plain.job is not None and plain.job.spec.serve is None and plain.applied == ()  # no default starts serving
    asked = decide(served(SQUAD, uid=None, minReplicas=1), {}, [policy])
    assert asked.violations == () and asked.job is not None
    assert (asked.job.spec.serve.max_replicas, asked.job.spec.serve.resources.memory) == (4, "8Gi")
    fixed = decide(served(SQUAD, uid=None, replicas=2), {}, [policy])  # replicas fixed: no maxReplicas default
    assert fixed.violations == () and fixed.job is not None and fixed.job.spec.serve.max_replicas is None
    over = decide(served(SQUAD, uid=None, replicas=8, resources={"gpus": 1}), {}, [policy])
    assert [f"{e.path}: {e.message}" for e in over.violations] == [
        "spec.serve.replicas: 8 exceeds 4 replicas allowed by BertTrainingPolicy serving",
        "spec.serve.resources.gpus: 1 exceeds 0 GPUs per replica allowed by BertTrainingPolicy serving"]
    closed = parse_policy({**POLICY, "spec": {"limits": {"allowServing": False}}})
    assert [e.path for e in decide(served(SQUAD, uid=None, replicas=1), {}, [closed]).violations] == ["spec.serve"]


def test_the_webhook_holds_a_started_jobs_new_spec_serve_to_the_serving_limits() -> None:
    """A started job's update is judged as a job only, except spec.serve, which may be added after it ran."""
    started = served(SQUAD, uid=None, replicas=8)
    started["status"] = {"acceptedSpec": copy.deepcopy(SQUAD["spec"])}
    given = PolicyInput({}, (parse_policy(POLICY),))
    assert serving_limits(started, given) == ("spec.serve.replicas: 8 exceeds 4 replicas allowed by "
                                              "BertTrainingPolicy serving")
    assert serving_limits(served(SQUAD, uid=None, replicas=2), given) is None
    assert serving_limits(SQUAD, given) is None and serving_limits(started, None) is None
    memo = SimpleNamespace(runtime=SimpleNamespace(policies=SimpleNamespace(input_for=lambda namespace: given), jobs={}))
    with pytest.raises(kopf.AdmissionError) as refused:  # what kubectl apply is answered
        validate_job(body=started, memo=memo)
    assert "spec.serve.replicas: 8 exceeds 4" in str(refused.value)


def test_tensorrt_fp16_reaches_the_trainers_triton_export_and_nothing_else_asks_for_it() -> None:
    """spec.serve.tensorrt: fp16 renders --triton_tensorrt fp16 on the fine-tuning stage (the export's config.pbtxt
    gets TF-TRT's optimization block); without it, or without the triton export, the flag is absent."""
    from bert_operator.render import render_all

    def flags(document: dict[str, Any]) -> list[str]:
        [mpijob] = [o for o in render_all(parse_job(document)) if o["kind"] == "MPIJob"]
        return mpijob["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["command"]

    fast = served(SERVE_MRPC, tensorrt="fp16", runtime="triton", resources={"gpus": 1})
    command = flags(fast)
    assert command[command.index("--triton_tensorrt") + 1] == "fp16"
    assert "--triton_tensorrt" not in flags(served(SERVE_MRPC))
    unserved = copy.deepcopy(SERVE_MRPC)
    unserved["spec"].pop("serve", None)
    assert "--triton_tensorrt" not in flags(unserved)

"""Rendering a served job (spec.serve) as one KServe InferenceService. Pure functions, no I/O.

The InferenceService has two components, both KServe's own kinds:

- the predictor: KServe's Triton runtime (``kserve-tritonserver``) on the Triton model repository the job's
  fine-tuning stage exported (``<stage output>/export/triton/``, one model folder ``<model>/`` in it), protocol v2;
  or, with ``runtime: python``, the trainer image's own predictor on the same repository, KServe's storage
  initializer copying it to /mnt/models as it does for Triton;
- the transformer: the trainer image running ``python -m bert_trainer serve transformer``, which tokenizes text with
  the export's vocabulary and turns logits into labels or answer spans. KServe's controller appends
  ``--model_name <isvc> --predictor_host <host> --http_port 8080`` to its arguments.

Object-store keys reach both only as the training stage's MPIJob passes them: secretKeyRef env from
spec.output.credentialsSecret (KServe's storage initializer takes its keys from the predictor's ServiceAccount:
spec.serve.serviceAccountName). The template (``templates/inferenceservice.yaml.j2``) only places the values
prepared here; unlike the MPIJob's it renders once per served job, so it is plain Jinja and YAML, not cached.
"""

from __future__ import annotations

from typing import Any

from bert_common.contract import EXPORT_FOLDER, JOB_NAME_LABEL, TASK_LABEL

from ..api.locations import in_pod, join
from ..api.models import BertTrainingJob, ServeSpec
from ..api.stages import Stage
from ..api.reserved import MANAGED_BY_LABEL, PART_OF_LABEL
from ..api.rules import TRITON_EXPORT
from ..tasks import report_uri, stages_of, task_of
from .command import TRAINER_ENTRY
from .plain import load, render_text
from .image import container_security_context, pod_security_context
from .values import RenderSettings, output_claim, _owner_references, s3_env

TEMPLATE = "inferenceservice.yaml.j2"
#: KServe's ClusterServingRuntime for Triton (config/runtimes/kserve-tritonserver.yaml). Named, not auto-selected:
#: KServe's TF Serving runtime also auto-selects modelFormat tensorflow 2.
TRITON_RUNTIME = "kserve-tritonserver"
#: Triton's version folder of the one model the export writes (<model>/1/model.savedmodel).
MODEL_VERSION = "1"
#: Where KServe's storage initializer puts the model repository in the predictor's pod.
MODEL_MOUNT = "/mnt/models"
#: The port KServe expects a custom predictor to listen on (InferenceServiceDefaultHttpPort).
HTTP_PORT = "8080"
#: The transformer's share: tokenizing a batch of sentences is light next to the model.
TRANSFORMER_RESOURCES = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}


def served_model(job: BertTrainingJob) -> str:
    """The model folder the predictor serves (mrpc, cola, squad); only for a job whose task can be served."""
    model = task_of(job.spec).served_model(job.spec)
    if model is None:  # the rules refuse spec.serve on such a job
        raise ValueError(f"a {task_of(job.spec).name} job has no model to serve")
    return model


def repository_uri(job: BertTrainingJob, stage: Stage | None = None) -> str:
    """The Triton model repository `stage` exported (default the last stage; a sweep's best trial): the predictor's
    storageUri."""
    return join(report_uri(job.spec, stage or stages_of(job.spec)[-1]), EXPORT_FOLDER, TRITON_EXPORT)


def model_version(job: BertTrainingJob, stage: Stage | None = None) -> str:
    """What status.serving.modelVersion says: Triton's version of the model and the stage that exported it."""
    return f"{MODEL_VERSION} ({(stage or stages_of(job.spec)[-1]).name})"


def _resources(serve: ServeSpec) -> dict[str, Any]:
    """The predictor's requests and limits: what the job sets, KServe's runtime defaults otherwise."""
    given = {key: value for key, value in (("cpu", serve.resources.cpu), ("memory", serve.resources.memory)) if value}
    limits = dict(given)
    if serve.resources.gpus:
        limits["nvidia.com/gpu"] = str(serve.resources.gpus)
    return {key: value for key, value in (("requests", given), ("limits", limits)) if value}


def inference_values(job: BertTrainingJob, settings: RenderSettings, stage: Stage | None = None) -> dict[str, Any]:
    """Everything the InferenceService template places, for a job with spec.serve (serving `stage`'s export)."""
    serve = job.spec.serve
    if serve is None:
        raise ValueError("the job has no spec.serve")
    spec, meta = job.spec, job.metadata
    model = served_model(job)
    repository = repository_uri(job, stage)
    assets = join(repository, model, "assets")
    storage_env = s3_env(spec.output)
    low, high = serve.replica_bounds()
    labels = {MANAGED_BY_LABEL: "bert-operator", PART_OF_LABEL: "bert-operator", JOB_NAME_LABEL: meta.name,
              TASK_LABEL: task_of(spec).name}
    pod_common: dict[str, Any] = {}
    if serve.service_account_name:
        pod_common["serviceAccountName"] = serve.service_account_name
    if spec.image_pull_secrets:
        pod_common["imagePullSecrets"] = [{"name": name} for name in spec.image_pull_secrets]
    volumes, mounts = output_claim(job.spec, read_only=True)
    triton = serve.runtime == "triton"
    predictor_env = list(storage_env) if triton else [{"name": "STORAGE_URI", "value": repository}, *storage_env]
    return {
        "name": meta.name,
        "namespace": meta.namespace,
        "labels": labels,
        "pod_labels": labels,
        "annotations": {},
        "owner_references": _owner_references(job),
        "min_replicas": low,
        "max_replicas": high,
        "pod_common": pod_common,
        # Triton's image picks its own user (runAsUser in KServe's runtime); every pod gets the runtime's seccomp
        # profile and no root, as PodSecurity restricted asks.
        "predictor_pod_security": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "transformer_pod_security": pod_security_context(),
        "container_security": container_security_context(),
        "triton": {"runtime": TRITON_RUNTIME} if triton else None,
        "storage_uri": repository,
        "predictor_env": predictor_env,
        "predictor_resources": _resources(serve),
        "predictor_command": [*TRAINER_ENTRY, "serve", "predictor", "--model_repository", MODEL_MOUNT,
                              "--model_name", model, "--http_port", HTTP_PORT],
        "image": spec.image or settings.default_image,
        "image_pull_policy": spec.image_pull_policy,
        "transformer_command": [*TRAINER_ENTRY, "serve", "transformer", "--assets_uri", in_pod(assets),
                                "--predictor_model", model],
        "transformer_env": [*storage_env, {"name": "PYTHONUNBUFFERED", "value": "1"}],
        "transformer_resources": TRANSFORMER_RESOURCES,
        "transformer_mounts": mounts,
        "transformer_volumes": volumes,
    }


def render_inference_service_text(job: BertTrainingJob, settings: RenderSettings | None = None,
                                  stage: Stage | None = None) -> str:
    """The template rendered with the job's values: the YAML text of its InferenceService."""
    return render_text(TEMPLATE, inference_values(job, settings or RenderSettings(), stage))


def render_inference_service(job: BertTrainingJob, settings: RenderSettings | None = None,
                             stage: Stage | None = None) -> dict[str, Any]:
    """The InferenceService of a job with spec.serve, serving `stage`'s export (default the last stage's)."""
    return load(render_inference_service_text(job, settings, stage))

"""Plain values for the MPIJob template, prepared from a validated job.

Every decision lives here (which volumes, which env, which command); the
template only places these values in the MPIJob's shape.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from bert_common import __version__

from ..api.locations import PvcRef, is_pvc, join, resolved, SYNCED_DATA_ROOT
from ..api.models import BertTrainingJob, BertTrainingJobSpec, StoreSpec
from ..api.presets import API_GROUP, API_VERSION, KIND
from ..api.reserved import KUEUE_PRIORITY_LABEL, KUEUE_QUEUE_LABEL, MANAGED_BY_LABEL, PART_OF_LABEL
from ..api.stages import Stage
from ..tasks import stage_data_path, task_of
from bert_common.contract import (
    ENV_PROGRESS_CA, ENV_PROGRESS_URL, ENV_STAGE, ENV_TOKEN_FILE, JOB_NAME_LABEL, LABEL_PREFIX, REPORT_PATH, STAGE_LABEL,
    TASK_LABEL, TOKEN_DIR, TOKEN_FILE, token_audience,
)
from .command import TRAINER_ENTRY, launcher_command
from .image import SSH_AUTH_MOUNT_PATH, WORKER_COMMAND, container_security_context, pod_security_context

DEFAULT_TRAINER_IMAGE = f"ghcr.io/bert-operator/trainer:{__version__}"
#: NCCL's log levels; WARN keeps a rank's log to NCCL's warnings and errors (INFO adds topology per rank).
NCCL_DEBUG_LEVELS = ("VERSION", "WARN", "INFO", "TRACE")
DEFAULT_NCCL_DEBUG = "WARN"
STAGE_INDEX_ANNOTATION = f"{LABEL_PREFIX}/stage-index"
GENERATION_ANNOTATION = f"{LABEL_PREFIX}/job-generation"
#: The job templates an MPIJob was made with (name@version, comma-separated): its stage's status.stages[].templates.
TEMPLATES_ANNOTATION = f"{LABEL_PREFIX}/templates"
#: A failed launcher fails its stage at once; the operator decides about re-creating it (runPolicy.maxRestarts).
DEFAULT_BACKOFF_LIMIT = 0
#: RunPolicySpec fields that are the operator's, not the MPIJob's runPolicy (the API server would prune them).
OPERATOR_RUN_POLICY_FIELDS = frozenset({"max_restarts"})
DATA_VOLUME = "dataset"
SHM_VOLUME = "dshm"
TOKEN_VOLUME = "bertoperator-token"
#: Keys of a credentialsSecret, passed to pods under the same names (boto3 reads them).
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


@dataclass(frozen=True)
class RenderSettings:
    """Operator-wide settings that shape every rendered MPIJob."""

    default_image: str = DEFAULT_TRAINER_IMAGE
    launcher_cpu: str = "500m"
    launcher_memory: str = "1Gi"
    #: Where trainers POST progress (the operator's Service); None: they only write progress.json.
    progress_url: str | None = None
    #: NCCL_DEBUG exported to every rank.
    nccl_debug: str = DEFAULT_NCCL_DEBUG
    #: PEM of the CA the ranks verify an https:// progress URL with (public; None: the system's CAs).
    progress_ca: str | None = None
    #: The PodSecurity level (restricted, baseline, privileged) the pods must pass with the platform's job templates.
    pod_security: str = "restricted"


def s3_env(store: StoreSpec) -> list[dict[str, Any]]:
    """boto3's standard variables for a store; keys only through secretKeyRef, never inlined."""
    if not resolved(store.uri).startswith("s3://"):
        return []
    env: list[dict[str, Any]] = []
    if store.credentials_secret:
        env += [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": store.credentials_secret, "key": key}}}
            for key in S3_SECRET_KEYS
        ]
    if store.endpoint:
        env.append({"name": "AWS_ENDPOINT_URL_S3", "value": store.endpoint})
    if store.region:
        env.append({"name": "AWS_DEFAULT_REGION", "value": store.region})
    return env


def output_claim(spec: BertTrainingJobSpec, *, read_only: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts) of the output's claim alone, for a pod that only reads or cleans the output (a served job's
    transformer, a sweep's cleanup Job); none for an s3:// output."""
    uri = resolved(spec.output.uri)
    if not is_pvc(uri):
        return [], []
    claim = PvcRef.parse(uri).claim
    name = f"pvc-{claim}"[:63]
    only: dict[str, Any] = {"readOnly": True} if read_only else {}
    volume = {"claimName": claim, **only}
    mount = {"name": name, "mountPath": PvcRef(claim, "").mount_path(), **only}
    return [{"name": name, "persistentVolumeClaim": volume}], [mount]


def _pvc_mounts(spec: BertTrainingJobSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One volume per claim any URI names; writable only if the output lives on it."""
    uris = [spec.dataset.uri, spec.output.uri, spec.model.vocab, spec.model.init_checkpoint]
    claims = sorted({PvcRef.parse(uri).claim for uri in uris if uri and is_pvc(uri)})
    output_uri = resolved(spec.output.uri)
    output_claim = PvcRef.parse(output_uri).claim if is_pvc(output_uri) else None
    volumes = [{"name": f"pvc-{claim}"[:63], "persistentVolumeClaim": {"claimName": claim}} for claim in claims]
    mounts = [
        {"name": f"pvc-{claim}"[:63], "mountPath": PvcRef(claim, "").mount_path(), "readOnly": claim != output_claim}
        for claim in claims
    ]
    return volumes, mounts


def _pod_common(spec: BertTrainingJobSpec) -> dict[str, Any]:
    """Scheduling fields shared by launcher and workers; only those the user set."""
    res = spec.resources
    common: dict[str, Any] = {}
    if res.node_selector:
        common["nodeSelector"] = res.node_selector
    if res.tolerations:
        common["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in res.tolerations]
    if res.affinity:
        common["affinity"] = res.affinity
    common["securityContext"] = pod_security_context()
    if res.priority_class_name:
        common["priorityClassName"] = res.priority_class_name
    if res.scheduler_name:
        common["schedulerName"] = res.scheduler_name
    if spec.image_pull_secrets:
        common["imagePullSecrets"] = [{"name": name} for name in spec.image_pull_secrets]
    return common


def _worker_resources(spec: BertTrainingJobSpec) -> dict[str, Any]:
    res = spec.resources
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    if res.gpus_per_worker:
        limits["nvidia.com/gpu"] = str(res.gpus_per_worker)
    for key, value in (("cpu", res.cpu), ("memory", res.memory)):
        if value is not None:
            limits[key] = requests[key] = value
    return {k: v for k, v in (("limits", limits), ("requests", requests)) if v}


def _owner_references(job: BertTrainingJob) -> list[dict[str, Any]]:
    """A controller reference when the job came from the API server (it has a uid)."""
    if not job.metadata.uid:
        return []
    return [{
        "apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND, "name": job.metadata.name,
        "uid": job.metadata.uid, "controller": True, "blockOwnerDeletion": True,
    }]


def _run_policy(spec: BertTrainingJobSpec) -> dict[str, Any]:
    """The MPIJob's runPolicy: the user's, with the defaults the operator's recovery and Kueue rely on.

    backoffLimit 0 unless set: the launcher's Job then fails on the first failed launcher pod, whose
    termination message carries the trainer's error, and the operator (not the Job controller) decides
    about a retry. With a queueName the MPIJob is always created suspended: Kueue un-suspends it on
    admission, and a user's runPolicy.suspend deactivates the Workload instead (the reconciler's part).
    """
    policy = spec.run_policy.model_dump(by_alias=True, exclude_none=True, exclude=set(OPERATOR_RUN_POLICY_FIELDS))
    policy.setdefault("backoffLimit", DEFAULT_BACKOFF_LIMIT)
    if spec.queue_name:
        policy["suspend"] = True
    # The launcher is created only once every worker is ready (WaitForWorkersReady), so a gang scheduler's
    # PodGroup can only ever hold the workers: the MPI Operator's own default, workers + 1, would wait forever.
    # Harmless without gang scheduling (the MPI Operator reads schedulingPolicy only for PodGroups).
    policy.setdefault("schedulingPolicy", {}).setdefault("minAvailable", spec.resources.workers)
    return policy


def _report_env(job: BertTrainingJob, stage: Stage, settings: RenderSettings) -> list[dict[str, Any]]:
    """Where and as whom rank 0 reports progress (exported to ranks with mpirun -x)."""
    if not settings.progress_url:
        return []
    path = REPORT_PATH.format(namespace=job.metadata.namespace, name=job.metadata.name)
    values = {
        ENV_PROGRESS_URL: f"{settings.progress_url.rstrip('/')}{path}",
        ENV_STAGE: stage.name,
        ENV_TOKEN_FILE: TOKEN_FILE,
    }
    if settings.progress_ca:
        values[ENV_PROGRESS_CA] = base64.b64encode(settings.progress_ca.encode()).decode()
    return [{"name": key, "value": value} for key, value in values.items()]


def _kueue_labels(spec: BertTrainingJobSpec) -> dict[str, str]:
    """Kueue reads the queue and the WorkloadPriorityClass from the MPIJob's own labels."""
    labels: dict[str, str] = {}
    if spec.queue_name:
        labels[KUEUE_QUEUE_LABEL] = spec.queue_name
    if spec.workload_priority_class_name:
        labels[KUEUE_PRIORITY_LABEL] = spec.workload_priority_class_name
    return labels


def template_values(job: BertTrainingJob, stage: Stage, settings: RenderSettings) -> dict[str, Any]:
    """Everything the MPIJob template places, for one stage of `job`."""
    spec = job.spec
    task_name = task_of(spec).name
    name = stage.mpijob_name(job.metadata.name)
    pod_labels = {
        MANAGED_BY_LABEL: "bert-operator",
        PART_OF_LABEL: "bert-operator",
        JOB_NAME_LABEL: job.metadata.name,
        STAGE_LABEL: stage.name,
        TASK_LABEL: task_name,
    }
    labels = {**pod_labels, **_kueue_labels(spec)}
    template = spec.resources.pod_template
    # The rules refuse a user key the operator sets; the operator's labels are placed last all the same.
    template_labels = {**(template.labels if template else {}), **pod_labels}
    template_annotations = dict(template.annotations) if template else {}
    annotations = {STAGE_INDEX_ANNOTATION: str(stage.index)}
    if job.metadata.generation is not None:
        annotations[GENERATION_ANNOTATION] = str(job.metadata.generation)

    output_env = s3_env(spec.output) + _report_env(job, stage, settings)
    launcher_env = [*output_env, {"name": "NCCL_DEBUG", "value": settings.nccl_debug}, {"name": "PYTHONUNBUFFERED", "value": "1"}]
    exported = [item["name"] for item in output_env]

    pvc_volumes, pvc_mounts = _pvc_mounts(spec)
    volumes = [{"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": spec.resources.shm_size}}, *pvc_volumes]
    worker_mounts = [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}, *pvc_mounts]
    if settings.progress_url:
        # A short-lived token only the operator's audience accepts; rank 0 sends it with each report.
        volumes.append({"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": {
            "audience": token_audience(job.metadata.namespace, job.metadata.name), "expirationSeconds": 3600,
            "path": "token"}}]}})
        worker_mounts.append({"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True})
    sync = None
    worker_resources = _worker_resources(spec)
    dataset_uri = resolved(spec.dataset.uri)
    if not is_pvc(dataset_uri):
        subpath = stage_data_path(spec, stage)
        storage = spec.resources.dataset_storage or task_of(spec).dataset_storage
        volumes.append({"name": DATA_VOLUME, "emptyDir": {"sizeLimit": storage}})
        # The scheduler places a worker only where the synced data fits; the kubelet evicts one that outgrows it.
        worker_resources.setdefault("requests", {})["ephemeral-storage"] = storage
        worker_mounts.append({"name": DATA_VOLUME, "mountPath": SYNCED_DATA_ROOT})
        sync = {
            "command": [
                *TRAINER_ENTRY, "sync",
                "--source", join(dataset_uri, subpath), "--dest", join(SYNCED_DATA_ROOT, subpath),
            ],
            "env": s3_env(spec.dataset),
            "mounts": [{"name": DATA_VOLUME, "mountPath": SYNCED_DATA_ROOT}],
            "resources": {"requests": {"ephemeral-storage": storage}},
        }

    return {
        "name": name,
        "namespace": job.metadata.namespace,
        "labels": labels,
        "pod_labels": template_labels,
        "pod_annotations": template_annotations,
        "annotations": annotations,
        "owner_references": _owner_references(job),
        "slots_per_worker": max(spec.resources.gpus_per_worker, 1),
        "ssh_auth_mount_path": SSH_AUTH_MOUNT_PATH,
        "container_security": container_security_context(),
        "run_policy": _run_policy(spec),
        "workers": spec.resources.workers,
        "image": spec.image or settings.default_image,
        "image_pull_policy": spec.image_pull_policy,
        "pod_common": _pod_common(spec),
        "launcher_command": launcher_command(spec, stage, exported),
        "launcher_env": launcher_env,
        "launcher_resources": {
            "requests": {"cpu": settings.launcher_cpu, "memory": settings.launcher_memory},
            "limits": {"memory": settings.launcher_memory},
        },
        "worker_command": WORKER_COMMAND,
        "worker_resources": worker_resources,
        "worker_mounts": worker_mounts,
        "volumes": volumes,
        "sync": sync,
    }

"""Rendering a sweep's cleanup Job (sweep.keepTrialCheckpoints: false). Pure functions, no I/O.

Why a Job and not the operator itself: the checkpoints are in the tenant's bucket or claim, and the operator never
holds the tenant's credentials (secrets only by reference). So the deletion runs as the trials ran: the trainer image,
the output's Secret through secretKeyRef, the output's claim mounted, the pod security the trials had, and the job's
queue (Kueue manages batch/v1 Jobs by the same queue-name label). It asks for no GPU: a few hundred deletes of
objects. Its command names each trial folder whose checkpoints go, never the best's (``remove-checkpoints``, which
also refuses any folder that is not a trial's). backoffLimit retries a pod that failed on a flaky store (the
podFailurePolicy fails the Job at once on refused arguments, and does not count an evicted pod); the deletion is
idempotent, so a retried or recreated Job reaches the same end.
"""

from __future__ import annotations

from typing import Any

from bert_common.contract import JOB_NAME_LABEL, STAGE_LABEL, TASK_LABEL

from ..api.models import BertTrainingJob
from ..api.reserved import MANAGED_BY_LABEL, PART_OF_LABEL
from ..api.stages import Stage
from ..tasks import stage_output, task_of
from .command import TRAINER_ENTRY
from .image import container_security_context
from .plain import load, render_text
from .values import RenderSettings, output_claim, _kueue_labels, _owner_references, _pod_common, s3_env

TEMPLATE = "cleanup-job.yaml.j2"
#: The Job's name suffix (<job>-cleanup: always shorter than the trials' worker pod names, which the name rule bounds)
#: and the stage label its pod carries.
SUFFIX = "cleanup"
#: The trainer's subcommand and its flag (trainer/bert_trainer/tasks/remove_checkpoints.py).
COMMAND, TRIAL_FLAG = "remove-checkpoints", "--trial_output"
#: Pod retries for a store that fails now and then; a stuck store is cut off after an hour.
BACKOFF_LIMIT, ACTIVE_DEADLINE_SECONDS = 2, 3600
#: The trainer's exit status for arguments it refuses (argparse's 2): no retry can change them, so the Job fails at
#: once; a pod evicted or preempted (DisruptionTarget) is not counted against the retries.
REFUSED_EXIT_CODE = 2
POD_FAILURE_POLICY = {"rules": [
    {"action": "FailJob", "onExitCodes": {"containerName": "cleanup", "operator": "In", "values": [REFUSED_EXIT_CODE]}},
    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}
#: A day for `kubectl logs job/<job>-cleanup`; the status keeps the outcome after the Job is gone.
TTL_SECONDS_AFTER_FINISHED = 86400
RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
#: The scheduling fields of the trials the Job keeps: where the tenant's pods may run and pull from. It leaves out
#: the gang scheduler (schedulerName) and the priority class (a cleanup preempts nothing).
_POD_FIELDS = ("nodeSelector", "tolerations", "affinity", "securityContext", "imagePullSecrets")


def cleanup_job_name(job_name: str) -> str:
    return f"{job_name}-{SUFFIX}"


def cleanup_values(job: BertTrainingJob, settings: RenderSettings, removed: list[Stage]) -> dict[str, Any]:
    """Everything the cleanup Job's template places: the trials in `removed` lose their checkpoints."""
    spec, meta = job.spec, job.metadata
    pod_labels = {MANAGED_BY_LABEL: "bert-operator", PART_OF_LABEL: "bert-operator", JOB_NAME_LABEL: meta.name,
                  STAGE_LABEL: SUFFIX, TASK_LABEL: task_of(spec).name}
    common = _pod_common(spec)
    volumes, mounts = output_claim(job.spec, read_only=False)
    command = [*TRAINER_ENTRY, COMMAND]
    for stage in removed:
        command += [TRIAL_FLAG, stage_output(spec, stage)]
    return {
        "name": cleanup_job_name(meta.name),
        "namespace": meta.namespace,
        "labels": {**pod_labels, **_kueue_labels(spec)},
        "owner_references": _owner_references(job),
        "backoff_limit": BACKOFF_LIMIT,
        "pod_failure_policy": POD_FAILURE_POLICY,
        "active_deadline_seconds": ACTIVE_DEADLINE_SECONDS,
        "ttl_seconds_after_finished": TTL_SECONDS_AFTER_FINISHED,
        "pod_labels": pod_labels,
        "pod_common": {key: common[key] for key in _POD_FIELDS if key in common},
        "image": spec.image or settings.default_image,
        "image_pull_policy": spec.image_pull_policy,
        "command": command,
        "env": [*s3_env(spec.output), {"name": "PYTHONUNBUFFERED", "value": "1"}],
        "resources": RESOURCES,
        "container_security": container_security_context(),
        "mounts": mounts,
        "volumes": volumes,
    }


def render_cleanup_job_text(job: BertTrainingJob, settings: RenderSettings | None, removed: list[Stage]) -> str:
    return render_text(TEMPLATE, cleanup_values(job, settings or RenderSettings(), removed))


def render_cleanup_job(job: BertTrainingJob, settings: RenderSettings | None, removed: list[Stage]) -> dict[str, Any]:
    """The cleanup Job of a sweep whose trials in `removed` lose their checkpoints."""
    return load(render_cleanup_job_text(job, settings, removed))

"""The status the operator writes on BertTrainingJobs and BertTrainingPolicies, as models.

Only the CRD generator and the operator use these; they exist so that the
status subresource has a real schema (and so `kubectl explain` can describe
it) rather than an opaque object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.alias_generators import to_camel

from bert_common.contract import PROGRESS_FIELDS

JobPhase = Literal["Pending", "Queued", "Created", "Running", "Restarting", "Suspended", "Succeeded", "Failed"]


class StatusModel(BaseModel):
    """camelCase on the wire, like the spec."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Condition(StatusModel):
    """A condition in the Kubernetes API conventions' shape."""

    type: str = Field(..., description="Condition type, e.g. Valid, Running, Succeeded, ProgressAvailable.")
    status: Literal["True", "False", "Unknown"]
    reason: str = Field("", description="CamelCase machine-readable reason.")
    message: str = Field("", description="Human-readable detail.")
    last_transition_time: str | None = Field(None, description="RFC 3339 time the status last changed.")
    observed_generation: int | None = Field(None, description="metadata.generation this condition was computed from.")


class _OperatorProgress(StatusModel):
    """The progress fields the operator adds to what the trainer reports."""

    stage: str | None = Field(None, description="Stage the figures belong to, e.g. phase1.")
    percent: int | None = Field(None, description="Whole-job completion, 0-100.")
    display: str | None = Field(None, description="Short form for kubectl get, e.g. '45% phase1'.")


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


#: Training progress copied from the trainer's progress.json: every field of the contract, so the
#: API server's structural pruning keeps all that the operator writes. Made from the contract's table at run time,
#: so a type checker knows only the operator's fields.
if TYPE_CHECKING:
    Progress = _OperatorProgress
else:
    Progress = create_model(
        "Progress",
        __base__=_OperatorProgress,
        __doc__="Training progress copied from the trainer's progress.json.",
        **{_snake(f.name): (f.kind | None, Field(None, description=f.description)) for f in PROGRESS_FIELDS},
    )


class StageStatus(StatusModel):
    """One MPIJob the job runs (a pretraining phase, or the single fine-tuning / data stage)."""

    name: str
    mpi_job: str | None = Field(None, description="Name of the MPIJob running this stage.")
    phase: JobPhase | None = None
    start_time: str | None = None
    completion_time: str | None = None
    restarts: int | None = Field(
        None, description="Times the operator re-created this stage's MPIJob after an infrastructure failure.")
    queue_name: str | None = Field(
        None, description="Kueue LocalQueue the stage's MPIJob was made in: Kueue owns its suspend until it ends, "
                          "whatever the job's policies say later.")
    last_restart_reason: str | None = Field(
        None, description="Why the stage was last restarted, e.g. 'pod j-phase1-worker-1: Evicted: ...'.")
    last_restart_time: str | None = Field(None, description="When the failed MPIJob of the last restart was deleted.")
    restarted_mpi_job_uid: str | None = Field(
        None, description="uid of the failed MPIJob the last restart replaced (so one failure is counted once).")
    gpus: int | None = Field(None, ge=0, description="GPUs the stage's MPIJob holds: replicas x nvidia.com/gpu limits.")
    running_since: str | None = Field(
        None, description="When the stage's current attempt was first seen Running; unset between attempts.")
    running_seconds: int | None = Field(
        None, ge=0, description="Seconds the stage's ended attempts ran (Running to end), restarts included.")
    gpu_hours: float | None = Field(
        None, ge=0, description="gpus x runningSeconds / 3600 over the stage's ended attempts, restarts included.")
    early_stopped: str | None = Field(None, description="A sweep's trial stopped early: why (sweep.earlyStop).")
    templates: list[str] | None = Field(
        None, description="The job templates the stage's MPIJob was made with, as name@version, in the order applied.")


class TrialHyperparameters(StatusModel):
    """What one trial of a sweep runs with."""

    learning_rate: float | None = None
    seed: int | None = None
    epochs: float | None = None
    batch_size_per_gpu: int | None = None


class TrialStatus(StatusModel):
    """One trial of a fine-tuning sweep (spec.task.<task>.sweep): a stage of its own, t<index>."""

    index: int = Field(..., ge=0)
    name: str = Field(..., description="t<index>: its stage, and its MPIJob's suffix.")
    hyperparameters: TrialHyperparameters | None = None
    phase: JobPhase | None = None
    mpi_job: str | None = Field(None, description="Name of its MPIJob.")
    gpu_hours: float | None = Field(None, ge=0, description="GPU-hours of its ended attempts.")
    metrics: dict[str, float | None] | None = Field(
        None, description="Its dev metrics from its results report (accuracy, f1, mcc, exact_match).")
    percent: int | None = Field(None, ge=0, le=100, description="How far its training is, from its progress reports.")
    step: int | None = Field(None, ge=0, description="Its last reported step.")
    updated_at: str | None = Field(None, description="When it last reported progress.")
    best: bool | None = Field(None, description="True on the best trial so far by the selected metric.")
    first_epoch: dict[str, float | None] | None = Field(
        None, description="sweep.earlyStop: its dev metrics after the first epoch, and how many classes it predicted.")
    stopped: str | None = Field(None, description="Why it was stopped early (sweep.earlyStop).")
    checkpoints: Literal["removed"] | None = Field(
        None, description="removed: the cleanup Job deleted its checkpoints (sweep.keepTrialCheckpoints: false).")


class TrialCleanupStatus(StatusModel):
    """The Job that deletes the checkpoints of a sweep's trials but the best (sweep.keepTrialCheckpoints: false)."""

    job: str | None = Field(None, description="Name of the batch/v1 Job (<job>-cleanup).")
    phase: Literal["Running", "Succeeded", "Failed"] | None = Field(
        None, description="Running until the Job completes; Failed when it failed or could not be made (the "
                          "checkpoints may then remain; the job itself stays Succeeded).")
    kept: str | None = Field(None, description="The trial whose checkpoints stay: the best.")
    removed: list[str] = Field(default_factory=list, description="The trials whose checkpoints it deletes.")
    message: str | None = Field(None, description="Why it failed, or what it did.")
    completion_time: str | None = Field(None, description="When it ended.")


class StoreLocation(StatusModel):
    """A location and how to reach it (a Secret by name only)."""

    uri: str | None = None
    endpoint: str | None = None
    region: str | None = None
    credentials_secret: str | None = None


class ResolvedLocations(StatusModel):
    """Where the job reads and writes, with other jobs' outputs and policies' defaults filled in; fixed when its
    first MPIJob is made (the rendered MPIJobs hold these)."""

    dataset: StoreLocation | None = None
    output: StoreLocation | None = None
    vocab: str | None = None
    init_checkpoint: str | None = None
    data_paths: list[str] | None = Field(None, description="Each pretraining phase's records folder under dataset.uri.")


class DependencyStatus(StatusModel):
    """A job whose outputs this job takes as inputs."""

    name: str = Field(..., description="The BertTrainingJob (same namespace).")
    uid: str | None = Field(None, description="Its uid when first seen: a job of that name made later is another job.")
    phase: str | None = Field(None, description="Its phase when last looked at.")
    fields: list[str] = Field(default_factory=list, description="The spec fields that name it, e.g. spec.dataset.fromJob.")


class PolicyApplied(StatusModel):
    """One value a BertTrainingPolicy gave the job."""

    path: str = Field(..., description="The spec field, e.g. spec.queueName.")
    value: str = Field(..., description="The value it got: a string as is, anything else as JSON (e.g. {\"pool\":\"gpu\"}).")
    how: Literal["default", "forced"] = Field(..., description="default (the job left it unset) or forced (replaces the job's).")
    policy: str = Field(..., description="The BertTrainingPolicy that set it.")


class PolicyStatus(StatusModel):
    """Which BertTrainingPolicies select the job's namespace and what they set, so a user sees why a job got a
    queue or a node selector."""

    policies: list[str] = Field(default_factory=list, description="Names of the policies that apply.")
    applied: list[PolicyApplied] = Field(default_factory=list, description="Each value they gave the job.")


class ServingStatus(StatusModel):
    """The job's KServe InferenceService (spec.serve), as its conditions last said."""

    inference_service: str | None = Field(None, description="Name of the InferenceService (the job's).")
    url: str | None = Field(None, description="Where it answers (its status.url), once KServe has one.")
    ready: bool | None = Field(None, description="Its Ready condition is True: predictor and transformer answer.")
    reason: str | None = Field(None, description="Why it is not ready: its first condition that is not True "
                                                 "(e.g. PredictorReady: ...), or why it was not made.")
    model: str | None = Field(None, description="The model it serves (the triton export's model folder, e.g. mrpc).")
    model_version: str | None = Field(None, description="Its model version: Triton's version folder and the stage "
                                                        "that exported it, e.g. 1 (glue).")
    storage_uri: str | None = Field(None, description="The model repository the predictor loads.")
    applied_hash: str | None = Field(None, description="Hash of the InferenceService spec last applied (from spec.serve).")
    conditions: list[Condition] = Field(
        default_factory=list, description="Its conditions as KServe wrote them (Ready, PredictorReady, "
                                          "TransformerReady, IngressReady, ...).")


class BertTrainingJobStatus(StatusModel):
    """Observed state of a BertTrainingJob."""

    phase: JobPhase | None = Field(
        None, description="Pending, Queued (waiting for Kueue), Created, Running, Restarting, Suspended, Succeeded or Failed.")
    task: str | None = Field(None, description="The task's key under spec.task.")
    model: str | None = Field(None, description="Model preset.")
    workers: int | None = None
    gpus: int | None = Field(None, description="GPUs over all workers.")
    current_stage: str | None = Field(None, description="Stage running now, e.g. phase2.")
    stages: list[StageStatus] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    start_time: str | None = None
    completion_time: str | None = None
    observed_generation: int | None = None
    progress: Progress | None = None
    accepted_spec: dict[str, Any] | None = Field(
        None,
        description="The spec the job started with; later changes other than runPolicy.suspend are refused.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    policy: PolicyStatus | None = Field(None, description="The BertTrainingPolicies that apply and what they set.")
    resolved: ResolvedLocations | None = None
    dependencies: list[DependencyStatus] = Field(
        default_factory=list, description="Jobs this job takes inputs from (spec.dataset.fromJob, "
                                          "spec.model.initCheckpointFrom, spec.model.vocabFrom).")
    trials: list[TrialStatus] = Field(
        default_factory=list, description="A sweep's trials, in order (spec.task.<task>.sweep).")
    serving: ServingStatus | None = Field(None, description="The InferenceService of spec.serve, once the job succeeded.")
    trial_cleanup: TrialCleanupStatus | None = Field(
        None, description="A sweep's cleanup Job (sweep.keepTrialCheckpoints: false), once the sweep succeeded.")
    results: dict[str, Any] | None = Field(
        None,
        description="Final metrics and checkpoint URI from results.json; artifacts: the exported models' URIs "
                    "(stage, format, uri); gpuHours: GPU-hours over all stages' ended attempts, restarts included; "
                    "best: a sweep's best trial (trial, index, metric, value, hyperparameters, metrics, final).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


# A platform team must see a broken or conflicting policy on the policy itself, not only in its tenants' refused jobs.
class BertTrainingPolicyStatus(StatusModel):
    """Observed state of a BertTrainingPolicy: what it reaches, and whether it is valid and agrees with the others."""

    namespaces: int | None = Field(None, ge=0, description="Namespaces the namespaceSelector selects now.")
    jobs: int | None = Field(None, ge=0, description="BertTrainingJobs in those namespaces.")
    conflicts: list[str] = Field(
        default_factory=list, description="Fields another selecting policy gives a different value, one line each "
                                          "('spec.queueName in namespace team-a: ...'); jobs there are refused.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Valid: False, with the reason and message, when the policy is invalid or conflicts.")
    observed_generation: int | None = Field(None, description="metadata.generation the status was computed from.")


def wire_key(model: type[BaseModel], name: str) -> str:
    """A status field's key as written on the wire (its camelCase alias): taken from the model, so that code reading
    a status as stored (a dict) spells each key once, the way the CRD's schema does."""
    alias = model.model_fields[name].alias
    return alias if alias is not None else name


#: The key of the spec a job started with: what "started" means to the reconciler, the webhook and local mode.
ACCEPTED_SPEC = wire_key(BertTrainingJobStatus, "accepted_spec")

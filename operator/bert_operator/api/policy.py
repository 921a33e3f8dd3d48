"""BertTrainingPolicy: a platform team's rules for the jobs of the namespaces it selects, as pydantic models.

Like the job's models, these are the one source of truth for the policy's CRD schema and for the code that
applies it (:mod:`bert_operator.policy`). A policy has three parts, each optional:

- ``defaults``: values a job gets where its own spec does not set the field (the job wins where it sets one);
- ``limits``: what a job may ask for at all, checked on the job after defaults and forced values;
- ``forced``: values that replace the job's own, whatever it set (e.g. the team's Kueue queue).

Field names follow the job's spec, so a platform team reads a policy in the words its tenants' jobs use.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from .models import (
    DNS_SUBDOMAIN_PATTERN, MAX_SERVE_REPLICAS, URL_PATTERN, ApiModel, DnsLabel, DnsSubdomain, Int32, ModelPreset,
    Precision, Quantity, ServeRuntime, Toleration,
)

POLICY_KIND = "BertTrainingPolicy"
POLICY_PLURAL = "berttrainingpolicies"
POLICY_SINGULAR = "berttrainingpolicy"
POLICY_SHORT_NAMES = ("btp",)

#: Spec fields a policy may forbid tenants to set, by their path under `spec` (the wire names).
FORBIDDABLE_FIELDS = (
    "image", "imagePullSecrets", "queueName", "workloadPriorityClassName", "precision",
    "resources.nodeSelector", "resources.tolerations", "resources.affinity", "resources.priorityClassName",
    "resources.schedulerName", "resources.podTemplate", "resources.cpu", "resources.memory",
    "runPolicy.schedulingPolicy", "runPolicy.schedulingPolicy.queue", "runPolicy.schedulingPolicy.priorityClass",
    "runPolicy.schedulingPolicy.scheduleTimeoutSeconds", "runPolicy.backoffLimit",
    "runPolicy.activeDeadlineSeconds", "runPolicy.ttlSecondsAfterFinished", "runPolicy.maxRestarts",
    "output.endpoint", "output.credentialsSecret", "dataset.endpoint", "dataset.credentialsSecret",
)
ForbiddableField = Literal[FORBIDDABLE_FIELDS]  # type: ignore[valid-type]

#: A storage URI that may name the job: `{namespace}` and `{name}` are replaced by the job's own.
UriTemplate = Annotated[str, StringConstraints(pattern=r"^(s3|pvc)://[^\s]+$", max_length=1024)]
#: A location prefix of a limit: a URI template, or a scheme alone (`pvc://`: every claim of the job's own namespace,
#: which is all a pod can mount).
PrefixTemplate = Annotated[str, StringConstraints(pattern=r"^(s3|pvc)://[^\s]*$", max_length=1024)]


class LabelSelectorRequirement(ApiModel):
    """One expression of a metav1.LabelSelector."""

    key: Annotated[str, StringConstraints(min_length=1, max_length=317)] = Field(..., description="Label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(..., description="In, NotIn, Exists or DoesNotExist.")
    values: list[str] = Field(default_factory=list, description="Values for In and NotIn; empty for Exists and DoesNotExist.")


class LabelSelector(ApiModel):
    """A metav1.LabelSelector: every matchLabels pair and every expression must hold; empty selects everything."""

    match_labels: dict[str, str] = Field(default_factory=dict, description="Labels a namespace must have, exactly.")
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list, description="Set-based requirements.")


class OutputTemplate(ApiModel):
    """Where a job's results go when it names no output: a URI template with the store's endpoint and Secret."""

    uri: UriTemplate = Field(..., description="e.g. s3://bert-results/{namespace}/{name}; {namespace} and {name} are the job's.")
    endpoint: Annotated[str, StringConstraints(pattern=URL_PATTERN)] | None = Field(None, description="S3 endpoint URL.")
    region: str | None = Field(None, description="S3 region.")
    credentials_secret: DnsSubdomain | None = Field(None, description="Secret in the job's namespace with the S3 keys.")


class PolicySchedulingPolicy(ApiModel):
    """The runPolicy.schedulingPolicy fields a policy may set: where a gang scheduler queues the job's PodGroup.
    (minAvailable and minResources are the job's own size, not the platform's choice.)"""

    queue: DnsSubdomain | None = Field(None, description="Volcano Queue of the PodGroup.")
    priority_class: DnsSubdomain | None = Field(None, description="PriorityClass of the PodGroup (volcano).")
    schedule_timeout_seconds: Int32 | None = Field(
        None, ge=0, description="Seconds the gang may wait to be scheduled (scheduler-plugins).")


class PolicyRunPolicy(ApiModel):
    """The runPolicy fields a policy may set."""

    active_deadline_seconds: int | None = Field(None, ge=1, description="Seconds a stage may run.")
    ttl_seconds_after_finished: int | None = Field(None, ge=0, description="Seconds after which a finished MPIJob is deleted.")
    max_restarts: int | None = Field(None, ge=0, le=100, description="Restarts after infrastructure failures.")
    scheduling_policy: PolicySchedulingPolicy | None = Field(
        None, description="Gang scheduling fields (runPolicy.schedulingPolicy), each on its own.")


class PolicyValues(ApiModel):
    """Values a policy gives jobs (as defaults, or forced): each in the job's own field."""

    image: Annotated[str, StringConstraints(pattern=r"^[^\s]+$", max_length=1024)] | None = Field(
        None, description="Trainer image.")
    queue_name: DnsSubdomain | None = Field(None, description="Kueue LocalQueue.")
    workload_priority_class_name: DnsSubdomain | None = Field(None, description="Kueue WorkloadPriorityClass.")
    priority_class_name: DnsSubdomain | None = Field(None, description="PriorityClass of the pods.")
    scheduler_name: DnsSubdomain | None = Field(None, description="Scheduler of the pods.")
    node_selector: dict[str, str] | None = Field(None, description="Node labels the pods must match.")
    tolerations: list[Toleration] | None = Field(None, description="Tolerations of the pods.")
    precision: Precision | None = Field(None, description="fp32, fp16 or bf16.")
    cpu: Quantity | None = Field(None, description="CPU request and limit per worker (resources.cpu).")
    memory: Quantity | None = Field(None, description="Memory request and limit per worker (resources.memory).")
    run_policy: PolicyRunPolicy | None = Field(None, description="runPolicy fields.")


class PolicyServeDefaults(ApiModel):
    """spec.serve fields a policy gives the jobs that ask to be served (a job without spec.serve is never served
    because of a default)."""

    min_replicas: int | None = Field(None, ge=0, le=MAX_SERVE_REPLICAS, description="serve.minReplicas (unless the job "
                                                                                   "sets replicas).")
    max_replicas: int | None = Field(None, ge=1, le=MAX_SERVE_REPLICAS, description="serve.maxReplicas (unless the job "
                                                                                   "sets replicas).")
    cpu: Quantity | None = Field(None, description="serve.resources.cpu per predictor replica.")
    memory: Quantity | None = Field(None, description="serve.resources.memory per predictor replica.")
    runtime: ServeRuntime | None = Field(None, description="serve.runtime: triton or python.")


class PolicyDefaults(PolicyValues):
    """Values for the fields a job leaves unset."""

    output: OutputTemplate | None = Field(None, description="The output location of a job that names none.")
    serve: PolicyServeDefaults | None = Field(None, description="spec.serve fields of the jobs that set spec.serve.")


class PolicyLimits(ApiModel):
    """What a job may ask for; several policies' limits all hold (the most restrictive wins)."""

    allowed_images: list[Annotated[str, StringConstraints(min_length=1, max_length=1024)]] | None = Field(
        None, description="Globs the trainer image must match one of (e.g. registry.example.com/bert/*); unset: any.")
    max_gpus_per_job: int | None = Field(None, ge=0, description="Most GPUs over all workers (workers x gpusPerWorker).")
    max_workers: int | None = Field(None, ge=1, description="Most worker pods.")
    max_gpus_per_worker: int | None = Field(None, ge=0, description="Most GPUs per worker.")
    max_cpu_per_job: Quantity | None = Field(
        None, description="Most CPU over all workers (workers x resources.cpu); a job must then set cpu (or get it "
                          "as a default).")
    max_memory_per_job: Quantity | None = Field(
        None, description="Most memory over all workers (workers x resources.memory); a job must then set memory (or "
                          "get it as a default).")
    max_cpu_per_worker: Quantity | None = Field(
        None, description="Most resources.cpu per worker; a job must then set cpu (or get it as a default).")
    max_memory_per_worker: Quantity | None = Field(
        None, description="Most resources.memory per worker; a job must then set memory (or get it as a default).")
    allowed_presets: list[ModelPreset] | None = Field(None, description="Model presets a job may use; unset: any.")
    allow_custom_model_config: bool | None = Field(None, description="false: model.config (preset custom) is refused.")
    allowed_dataset_prefixes: list[PrefixTemplate] | None = Field(
        None, description="URI prefixes the dataset (its uri, or what dataset.fromJob resolves to) must lie under "
                          "({namespace}, {name} allowed), or under allowedOutputPrefixes; unset: any.")
    allowed_output_prefixes: list[PrefixTemplate] | None = Field(
        None, description="URI prefixes the output must lie under, e.g. s3://bert-results/{namespace}/; unset: any.")
    allowed_read_prefixes: list[PrefixTemplate] | None = Field(
        None, description="URI prefixes every location a job reads must lie under, or under allowedOutputPrefixes: "
                          "the dataset, model.initCheckpoint and model.vocab, and what a fromJob reference resolves "
                          "to; pvc:// alone allows every claim of the job's namespace; unset: any.")
    max_active_deadline_seconds: int | None = Field(
        None, ge=1, description="Most runPolicy.activeDeadlineSeconds; a job must then set one (or get it as a default).")
    max_train_steps: int | None = Field(None, ge=1, description="Most pretrain.trainSteps.")
    allow_serving: bool | None = Field(None, description="false: spec.serve is refused (no InferenceService is made).")
    max_serve_replicas: int | None = Field(
        None, ge=1, description="Most InferenceService replicas per component (serve.replicas, or serve.maxReplicas).")
    max_serve_gpus: int | None = Field(None, ge=0, description="Most serve.resources.gpus per predictor replica.")
    max_trials: int | None = Field(None, ge=1, description="Most trials of a fine-tuning sweep (the product of its "
                                                            "lists' lengths).")
    max_parallel_trials: int | None = Field(None, ge=1, description="Most sweep.maxParallel: trials running at once, "
                                                                    "each with the job's GPUs.")
    forbidden_fields: list[ForbiddableField] = Field(
        default_factory=list, description="Spec fields tenants may not set themselves (defaults and forced values may).")


#: The most templates a policy forces (and `bertjob run --local --template` takes: it forces them through a policy).
MAX_FORCED_TEMPLATES = 16


class PolicyTemplates(ApiModel):
    """The platform's job templates (overlays on the MPIJobs) for the namespaces a policy selects."""

    forced: list[DnsLabel] = Field(
        default_factory=list, max_length=MAX_FORCED_TEMPLATES,
        description="Templates every job of these namespaces gets, first and in this order; a job cannot drop them.")
    allowed: list[DnsLabel] = Field(
        default_factory=list, max_length=64,
        description="Templates a job may ask for by name (spec.templates); a name no policy allows is refused.")


class BertTrainingPolicySpec(ApiModel):
    """A platform team's rules for the BertTrainingJobs of the namespaces it selects."""

    namespace_selector: LabelSelector = Field(
        default_factory=LabelSelector, description="Namespaces whose jobs follow this policy; empty: every namespace.")
    defaults: PolicyDefaults = Field(default_factory=PolicyDefaults, description="Values for fields a job leaves unset.")
    limits: PolicyLimits = Field(default_factory=PolicyLimits, description="What a job may ask for.")
    forced: PolicyValues = Field(default_factory=PolicyValues, description="Values that replace the job's own.")
    templates: PolicyTemplates = Field(
        default_factory=PolicyTemplates, description="Job templates: forced on every job, or allowed when asked for.")


class PolicyMeta(BaseModel):
    """The parts of a cluster-scoped object's metadata a policy needs."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: Annotated[str, StringConstraints(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)]
    generation: int | None = None


class BertTrainingPolicy(BaseModel):
    """A whole BertTrainingPolicy document."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    api_version: str = Field(alias="apiVersion")
    kind: Literal["BertTrainingPolicy"]
    metadata: PolicyMeta
    spec: BertTrainingPolicySpec = Field(default_factory=BertTrainingPolicySpec)
    status: dict[str, Any] | None = None

"""Rules that relate several fields, as a pure function returning field errors.

The rules every job follows live here; each task's own rules live in its
module under ``bert_operator.tasks`` and run through the registry.

Each rule names the one field a user should change; all broken rules are
reported together so a user fixes a spec in one pass (the MPI Operator's
validation style).
"""

from __future__ import annotations

from typing import Iterator

from bert_common.contract import EXPORT_TRITON
from .. import tasks as registry
from ..tasks import OperatorTask, chosen_tasks, longest_pod_name
from .checks import check_annotations_size, check_label_key, check_label_value, check_uri_path
from .errors import FieldError, shown
from .k8s_types import type_errors
from .models import BertTrainingJob, BertTrainingJobSpec, PodTemplateMeta, StoreSpec, ResourcesSpec, SchedulingPolicySpec
from .podsecurity import annotation_problem
from .reserved import owner_of, reserved_listing

#: Kubernetes DNS label limit, which pod names used as hostnames must respect.
MAX_POD_NAME = 63


def check(job: BertTrainingJob) -> list[FieldError]:
    """Every cross-field rule `job` breaks (empty when the job is valid)."""
    return [*_check_spec(job.spec), *_check_name(job), *_check_self_reference(job)]


def _check_self_reference(job: BertTrainingJob) -> Iterator[FieldError]:
    """A job that waits for its own outputs waits for ever (longer cycles are found across jobs: dependencies.py)."""
    for path, producer in references(job.spec):
        if producer == job.metadata.name:
            yield FieldError(path, f"names this job itself ({producer!r}); a job cannot take its inputs from its own outputs")


def references(spec: BertTrainingJobSpec) -> list[tuple[str, str]]:
    """(field path, job name) of every other job whose outputs `spec` takes as inputs."""
    model = spec.model
    refs = [("spec.dataset.fromJob", spec.dataset.from_job),
            ("spec.model.initCheckpointFrom.fromJob",
             model.init_checkpoint_from.from_job if model.init_checkpoint_from else None),
            ("spec.model.vocabFrom.fromJob", model.vocab_from.from_job if model.vocab_from else None)]
    return [(path, name) for path, name in refs if name]


def _check_name(job: BertTrainingJob) -> Iterator[FieldError]:
    try:
        longest = longest_pod_name(job.metadata.name, job.spec)
    except LookupError:
        return  # no task: reported by the task rule
    if len(longest) > MAX_POD_NAME:
        room = len(job.metadata.name) - (len(longest) - MAX_POD_NAME)
        yield FieldError(
            "metadata.name",
            f"too long: worker pod {longest!r} would have {len(longest)} characters, at most "
            f"{MAX_POD_NAME} are allowed; use a name of at most {max(room, 1)} characters",
        )


def _check_spec(spec: BertTrainingJobSpec) -> Iterator[FieldError]:
    chosen = chosen_tasks(spec)
    if len(chosen) != 1:
        got = "none" if not chosen else " and ".join(task.name for task in chosen)
        yield FieldError("spec.task", f"must set exactly one of {', '.join(registry.TASK_NAMES)}; got {got}")
        return
    [task] = chosen
    yield from _check_model(spec)
    yield from task.check(spec, spec.model.resolved_config().max_position_embeddings)
    yield from _check_inputs(spec, task)
    yield from _check_dataset(spec, task)
    yield from _check_store("spec.output", spec.output)
    yield from _check_exports(spec)
    yield from _check_serve(spec, task)
    for field, uri in (("vocab", spec.model.vocab), ("initCheckpoint", spec.model.init_checkpoint)):
        yield from check_uri_path(f"spec.model.{field}", uri)
    yield from _check_pods(spec)


def _check_pods(spec: BertTrainingJobSpec) -> Iterator[FieldError]:
    """What the pods are given as is must be what Kubernetes accepts, or the MPIJob is refused after apply."""
    resources = spec.resources
    for key, value in resources.node_selector.items():
        yield from check_label_key(f"spec.resources.nodeSelector[{key[:60]!r}]", key)
        yield from check_label_value(f"spec.resources.nodeSelector[{key[:60]!r}]", value)
    for i, toleration in enumerate(resources.tolerations):
        path = f"spec.resources.tolerations[{i}]"
        if toleration.operator == "Exists" and toleration.value:
            yield FieldError(f"{path}.value", "must be empty when operator is Exists")
        if not toleration.key and toleration.operator != "Exists":
            yield FieldError(f"{path}.operator", "must be Exists when key is empty (an empty key matches every taint)")
        if toleration.key:
            yield from check_label_key(f"{path}.key", toleration.key)
        if toleration.value:
            yield from check_label_value(f"{path}.value", toleration.value)
        if toleration.toleration_seconds is not None and toleration.effect != "NoExecute":
            yield FieldError(f"{path}.tolerationSeconds", f"only applies with effect NoExecute, got effect {toleration.effect}")
    if resources.affinity is not None:
        yield from type_errors("affinity-v1", resources.affinity, "spec.resources.affinity")
    if spec.queue_name is not None:
        yield from check_label_value("spec.queueName", spec.queue_name)  # it becomes the queue-name label
    if spec.workload_priority_class_name is not None:
        if spec.queue_name is None:
            yield FieldError("spec.workloadPriorityClassName", "only applies with queueName (a Kueue WorkloadPriorityClass)")
        yield from check_label_value("spec.workloadPriorityClassName", spec.workload_priority_class_name)
    if resources.pod_template is not None:
        yield from _check_pod_template("spec.resources.podTemplate", resources.pod_template)
    if spec.run_policy.scheduling_policy is not None:
        yield from _check_scheduling("spec.runPolicy.schedulingPolicy", spec.run_policy.scheduling_policy, resources)


def _check_pod_template(path: str, template: PodTemplateMeta) -> Iterator[FieldError]:
    """Keys and values the API server accepts on a pod, none that the operator or the MPI Operator write, and no
    annotation that would make the pods fail PodSecurity restricted."""
    for field, entries in (("labels", template.labels), ("annotations", template.annotations)):
        for key, value in entries.items():
            where = f"{path}.{field}[{key[:60]!r}]"
            owner = owner_of(key)
            if owner is not None:
                yield FieldError(where, f"{shown(key)} is set by {owner}; podTemplate may set any key but "
                                        f"{reserved_listing()}")
                continue
            yield from check_label_key(where, key, "label key" if field == "labels" else "annotation key")
            if field == "labels":
                yield from check_label_value(where, value)
            elif (problem := annotation_problem(key, value)) is not None:  # api/podsecurity.py says why
                yield FieldError(where, f"{shown(value)} {problem}")
    yield from check_annotations_size(f"{path}.annotations", template.annotations)


def _check_scheduling(path: str, policy: SchedulingPolicySpec, resources: ResourcesSpec) -> Iterator[FieldError]:
    """A PodGroup that can be scheduled, asking for resources by their real names.

    The launcher is created only after every worker is ready (launcherCreationPolicy WaitForWorkersReady), so
    while the gang waits only the workers exist: a minAvailable above resources.workers is never reached.
    """
    if policy.min_available is not None and policy.min_available > resources.workers:
        yield FieldError(
            f"{path}.minAvailable",
            f"must be <= resources.workers ({resources.workers}): the launcher pod is created only after the workers "
            f"are ready, so a gang of {policy.min_available} pods never forms; got {policy.min_available}",
        )
    for name in policy.min_resources or {}:
        yield from check_label_key(f"{path}.minResources[{name[:60]!r}]", name, "resource name")


def _check_inputs(spec: BertTrainingJobSpec, task: OperatorTask) -> Iterator[FieldError]:
    """The model files a task needs: a vocab to tokenize with, pretrained weights to fine-tune; each given once,
    as a location or as another job's output."""
    model = spec.model
    if task.needs_vocab and model.vocab is None and model.vocab_from is None:
        users = _listing([t.name for t in registry.TASKS if t.needs_vocab])
        yield FieldError("spec.model.vocab", f"required for {users}: the vocab.txt to tokenize with (or vocabFrom)")
    if task.needs_init_checkpoint and model.init_checkpoint is None and model.init_checkpoint_from is None:
        users = _listing([t.name for t in registry.TASKS if t.needs_init_checkpoint])
        yield FieldError("spec.model.initCheckpoint",
                         f"required for {users}: the pretrained weights to fine-tune (or initCheckpointFrom)")
    if model.vocab is not None and model.vocab_from is not None:
        yield FieldError("spec.model.vocabFrom", "set vocab or vocabFrom, not both")
    if model.init_checkpoint is not None and model.init_checkpoint_from is not None:
        yield FieldError("spec.model.initCheckpointFrom", "set initCheckpoint or initCheckpointFrom, not both")


def _check_dataset(spec: BertTrainingJobSpec, task: OperatorTask) -> Iterator[FieldError]:
    """A location or a producer, and a producer only where one exists: prepareData makes pretraining records;
    the GLUE and SQuAD files are downloaded, not made by any job."""
    dataset = spec.dataset
    if dataset.uri is None and dataset.from_job is None:
        yield FieldError("spec.dataset.uri", "required (or fromJob: a prepareData job of this namespace)")
        return
    if dataset.uri is not None and dataset.from_job is not None:
        yield FieldError("spec.dataset.fromJob", "set uri or fromJob, not both")
        return
    if dataset.from_job is not None:
        if not task.reads_records:
            readers = [t.name for t in registry.TASKS if t.reads_records]
            verb = "reads" if len(readers) == 1 else "read"
            yield FieldError("spec.dataset.fromJob", f"only {_listing(readers)} {verb} records another job makes (a "
                                                     f"prepareData job); {task.name} reads files, so give dataset.uri")
        return
    yield from _check_store("spec.dataset", dataset)


def _check_exports(spec: BertTrainingJobSpec) -> Iterator[FieldError]:
    formats = spec.output.export_formats or []
    if len(set(formats)) != len(formats):
        yield FieldError("spec.output.exportFormats", f"lists a format twice: {formats}")


#: The export format the InferenceService's predictor serves (the fine-tuning tasks export it by default).
TRITON_EXPORT = EXPORT_TRITON


def _check_serve(spec: BertTrainingJobSpec, task: OperatorTask) -> Iterator[FieldError]:
    """spec.serve: only a task with a model to serve, a triton export to serve it from, replicas given one way, and
    TensorRT only where Triton runs it on a GPU."""
    serve = spec.serve
    if serve is None:
        return
    if task.served_model(spec) is None:
        yield FieldError("spec.serve", f"only glue and squad jobs can be served; a {task.name} job makes no model "
                                       "that answers requests")
        return
    formats = spec.output.export_formats
    if formats is not None and TRITON_EXPORT not in formats:
        yield FieldError("spec.output.exportFormats", f"must list {TRITON_EXPORT} with spec.serve (the InferenceService "
                                                      f"serves <output>/export/{TRITON_EXPORT}/), got {list(formats)}")
    if serve.replicas is not None:
        for name, value in (("minReplicas", serve.min_replicas), ("maxReplicas", serve.max_replicas)):
            if value is not None:
                yield FieldError(f"spec.serve.{name}", "cannot be set with replicas (a fixed count); set either "
                                                      "replicas or minReplicas/maxReplicas")
    elif serve.min_replicas is not None and serve.max_replicas is not None and serve.min_replicas > serve.max_replicas:
        yield FieldError("spec.serve.maxReplicas", f"must be >= minReplicas ({serve.min_replicas}), got {serve.max_replicas}")
    if serve.tensorrt != "off":
        if serve.runtime != "triton":
            yield FieldError("spec.serve.tensorrt", f"{serve.tensorrt} needs runtime: triton (TF-TRT runs in Triton), "
                                                    f"got runtime: {serve.runtime}")
        if serve.resources.gpus < 1:
            yield FieldError("spec.serve.resources.gpus", f"must be >= 1 with tensorrt: {serve.tensorrt} (TensorRT runs "
                                                          "on a GPU), got 0")


def _listing(names: list[str]) -> str:
    """'a, b and c'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _check_model(spec: BertTrainingJobSpec) -> Iterator[FieldError]:
    model = spec.model
    if model.preset == "custom" and model.config is None:
        yield FieldError("spec.model.config", "required when preset is custom (a Google bert_config.json)")
    if model.preset != "custom" and model.config is not None:
        yield FieldError("spec.model.config", f"only allowed with preset: custom, got preset {model.preset!r}")
    config = model.resolved_config()
    if config.hidden_size % config.num_attention_heads:
        yield FieldError(
            "spec.model.config.num_attention_heads",
            f"must divide hidden_size ({config.hidden_size}), got {config.num_attention_heads}",
        )


def _check_store(path: str, store: StoreSpec) -> Iterator[FieldError]:
    yield from check_uri_path(f"{path}.uri", store.uri)
    if store.uri is None or store.uri.startswith("s3://"):
        return
    for field, value in (("endpoint", store.endpoint), ("region", store.region), ("credentialsSecret", store.credentials_secret)):
        if value is not None:
            yield FieldError(f"{path}.{field}", f"only applies to s3:// URIs, but uri is {store.uri!r}")

"""Applying BertTrainingPolicies to a job: one pure function for the admission webhook and the operator alike.

:func:`decide` takes a job as written, the labels of its namespace and every policy, and answers the job as it
runs (defaults filled in where the job is silent, forced values in place), what each policy set, and every way
the job breaks a policy, each naming the field and the policy. The rules of combining several policies that
select one namespace:

- **defaults and forced values**: policies that set the same field to the same value agree; different values
  are a conflict. A conflict is not resolved by order: the job is refused naming both policies (and the
  policies' status shows it), because a tenant's job must not depend on which of two rules happens to win.
- **limits**: every policy's limits hold at once, so the most restrictive wins: the smallest maximum, an image or
  URI allowed by every policy that lists any, a field forbidden by any policy.
- **order**: defaults fill only the fields the job leaves unset; forced values replace whatever is there; limits are
  checked on the result. Forbidden fields are checked on the job as written: a tenant may not set them, while
  the policies' own defaults and forced values may.
"""

from __future__ import annotations

import copy
import fnmatch
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

from pydantic import ValidationError

from .api.errors import FieldError, SpecError, format_path, from_validation_error, shown
from .api.models import BertTrainingJob
from .api.parse import parse_job
from .api.policy import BertTrainingPolicy, LabelSelector, PolicyLimits, PolicyValues
from .api.quantities import quantity, shown_quantity
from .api.required import unset_errors
from .tasks import task_of
from .tasks.trials import trials

#: Where each field of PolicyValues lives in a job's spec (wire paths under `spec`).
VALUE_PATHS: dict[str, tuple[str, ...]] = {
    "image": ("image",),
    "queue_name": ("queueName",),
    "workload_priority_class_name": ("workloadPriorityClassName",),
    "priority_class_name": ("resources", "priorityClassName"),
    "scheduler_name": ("resources", "schedulerName"),
    "node_selector": ("resources", "nodeSelector"),
    "tolerations": ("resources", "tolerations"),
    "precision": ("precision",),
    "cpu": ("resources", "cpu"),
    "memory": ("resources", "memory"),
}
RUN_POLICY_PATHS: dict[str, tuple[str, ...]] = {
    "active_deadline_seconds": ("runPolicy", "activeDeadlineSeconds"),
    "ttl_seconds_after_finished": ("runPolicy", "ttlSecondsAfterFinished"),
    "max_restarts": ("runPolicy", "maxRestarts"),
}
#: Where each field of PolicyServeDefaults lives: given only to a job that sets spec.serve (see _applies).
SERVE_PATHS: dict[str, tuple[str, ...]] = {
    "min_replicas": ("serve", "minReplicas"),
    "max_replicas": ("serve", "maxReplicas"),
    "cpu": ("serve", "resources", "cpu"),
    "memory": ("serve", "resources", "memory"),
    "runtime": ("serve", "runtime"),
}
SCHEDULING_POLICY_PATHS: dict[str, tuple[str, ...]] = {
    "queue": ("runPolicy", "schedulingPolicy", "queue"),
    "priority_class": ("runPolicy", "schedulingPolicy", "priorityClass"),
    "schedule_timeout_seconds": ("runPolicy", "schedulingPolicy", "scheduleTimeoutSeconds"),
}


@dataclass(frozen=True)
class InvalidPolicy:
    """A policy whose latest generation the operator cannot apply (the CRD's rules and the webhook refuse such a
    policy; it gets here with both off, or from before them). Letting the jobs it selects run without it would fail
    open, so it holds them: no MPIJob is made in the namespaces it selects until it is fixed or deleted. Where its
    last valid generation selects the namespace, that generation governs instead (`enforced`); an edit that widened
    the selector still holds the namespaces only the new selector picks."""

    name: str
    error: str
    #: Its namespaceSelector; None when that cannot be read either, and then it holds every namespace.
    selector: LabelSelector | None
    #: The namespaceSelector of its last valid generation, which the operator still enforces; None if there is none.
    enforced: LabelSelector | None = None

    def selects(self, labels: Mapping[str, str]) -> bool:
        """Whether it holds a namespace with `labels`: one its latest selector picks (every one, unreadable) and its
        last valid generation does not govern."""
        if self.enforced is not None and selects(self.enforced, labels):
            return False
        return self.selector is None or selects(self.selector, labels)

    def message(self) -> str:
        """What a held job says: the policy and its error (bounded: a status condition is no place for pages)."""
        error = "; ".join(self.error.splitlines())  # one line per problem, as SpecError renders them
        error = error if len(error) <= 1000 else error[:1000] + " ..."
        return f"BertTrainingPolicy {self.name} is invalid and selects this namespace: {error}"


@dataclass(frozen=True)
class PolicyInput:
    """What deciding a job needs besides the job: its namespace's labels and every policy (the operator's cache)."""

    labels: Mapping[str, str]
    policies: tuple[BertTrainingPolicy, ...]
    #: Invalid policies with no valid generation to enforce instead; those that select `labels` hold the job.
    invalid: tuple[InvalidPolicy, ...] = ()

    def holding(self) -> list[InvalidPolicy]:
        """The invalid policies that select this namespace, by name: while any does, no MPIJob may be made here."""
        return sorted((p for p in self.invalid if p.selects(self.labels)), key=lambda p: p.name)


@dataclass(frozen=True)
class PoliciesUnreadable:
    """The policies could not be read (the API failed): no MPIJob may be created until they can, or a job would run
    without its namespace's rules."""

    reason: str


@dataclass(frozen=True)
class Applied:
    """One value a policy gave the job: where, what, and whether as a default or forced."""

    path: str
    value: Any
    how: str
    policy: str


@dataclass(frozen=True)
class Decision:
    """A job under its namespace's policies: the job it runs as, what the policies set, and what they refuse."""

    policies: tuple[str, ...] = ()
    applied: tuple[Applied, ...] = ()
    violations: tuple[FieldError, ...] = ()
    job: BertTrainingJob | None = field(default=None, compare=False)

    def status(self) -> dict[str, Any] | None:
        """`status.policy` of the job: which policies applied and what they set (None when none selects it)."""
        if not self.policies:
            return None
        return {"policies": list(self.policies),
                "applied": [{"path": a.path, "value": a.value if isinstance(a.value, str) else json.dumps(
                    a.value, separators=(",", ":"), sort_keys=True), "how": a.how, "policy": a.policy} for a in self.applied]}


# ----------------------------------------------------------------- selection


def selects(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Whether a metav1.LabelSelector selects an object with `labels` (an empty selector selects everything)."""
    if any(labels.get(key) != value for key, value in selector.match_labels.items()):
        return False
    for requirement in selector.match_expressions:
        present = requirement.key in labels
        if requirement.operator == "In" and labels.get(requirement.key) not in requirement.values:
            return False
        if requirement.operator == "NotIn" and present and labels[requirement.key] in requirement.values:
            return False
        if requirement.operator == "Exists" and not present:
            return False
        if requirement.operator == "DoesNotExist" and present:
            return False
    return True


def selecting(policies: Iterable[BertTrainingPolicy], labels: Mapping[str, str]) -> list[BertTrainingPolicy]:
    """The policies that select a namespace with `labels`, by name."""
    return sorted((p for p in policies if selects(p.spec.namespace_selector, labels)), key=lambda p: p.metadata.name)


# ------------------------------------------------------------------ values


def _wire(value: Any) -> Any:
    if isinstance(value, list):
        return [_wire(item) for item in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(by_alias=True, exclude_none=True, mode="json")
    return value


def values_of(given: PolicyValues, namespace: str, name: str) -> dict[tuple[str, ...], Any]:
    """The spec paths a policy's defaults or forced values set, with their wire values."""
    out: dict[tuple[str, ...], Any] = {}
    for attribute, path in VALUE_PATHS.items():
        value = getattr(given, attribute)
        if value is not None:
            out[path] = _wire(value)
    if given.run_policy is not None:
        for attribute, path in RUN_POLICY_PATHS.items():
            value = getattr(given.run_policy, attribute)
            if value is not None:
                out[path] = value
        scheduling = given.run_policy.scheduling_policy
        for attribute, path in SCHEDULING_POLICY_PATHS.items():  # each field on its own, as the output's
            value = getattr(scheduling, attribute) if scheduling is not None else None
            if value is not None:
                out[path] = value
    serve = getattr(given, "serve", None)
    if serve is not None:
        for attribute, path in SERVE_PATHS.items():
            value = getattr(serve, attribute)
            if value is not None:
                out[path] = value
    output = getattr(given, "output", None)
    if output is not None:  # field by field: a job that names its own uri still gets the store's endpoint and Secret
        for key, value in _wire(output).items():
            out[("output", key)] = fill(value, namespace, name) if key == "uri" else value
    return out


def fill(template: str, namespace: str, name: str) -> str:
    """A URI template with the job's namespace and name in place of {namespace} and {name}."""
    return template.replace("{namespace}", namespace).replace("{name}", name)


def _get(spec: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = spec
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _set(spec: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = spec
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = copy.deepcopy(value)


@dataclass(frozen=True)
class Conflict:
    """Two selecting policies give one field different values (as defaults, or as forced values)."""

    path: tuple[str, ...]
    part: str
    first: tuple[str, Any]
    second: tuple[str, Any]

    def error(self) -> FieldError:
        (a, value_a), (b, value_b) = self.first, self.second
        return FieldError(format_path(("spec", *self.path)), (
            f"BertTrainingPolicies {a} and {b} give different {self.part} values ({shown(value_a)} and "
            f"{shown(value_b)}); the platform team must resolve the conflict"))


def _gathered(policies: list[BertTrainingPolicy], part: str, namespace: str, name: str
              ) -> tuple[dict[tuple[str, ...], tuple[Any, str]], list[Conflict]]:
    """Each path the policies' `part` (defaults or forced) sets, with its value and policy, and the conflicts
    (a conflicting path is set by none)."""
    chosen: dict[tuple[str, ...], tuple[Any, str]] = {}
    found: list[Conflict] = []
    for policy in policies:
        for path, value in values_of(getattr(policy.spec, part), namespace, name).items():
            if path in chosen and chosen[path][0] != value:
                first = (chosen[path][1], chosen[path][0])
                found.append(Conflict(path, part, first, (policy.metadata.name, value)))
            chosen.setdefault(path, (value, policy.metadata.name))
    conflicting = {conflict.path for conflict in found}
    return {path: item for path, item in chosen.items() if path not in conflicting}, found


# ------------------------------------------------------------------ limits


def _under(uri: str, prefix: str) -> bool:
    """Whether `uri` lies under `prefix` as a path (s3://b/team-a does not hold s3://b/team-ab; `pvc://` holds every
    claim). A URI with a '..' segment lies under nothing: the job's rules refuse one, and this check must not rely
    on every location having passed them (a producer's recorded output did not)."""
    if ".." in uri.split("://", 1)[-1].split("/"):
        return False
    bare = prefix.rstrip("/")
    return uri == bare or uri.startswith(bare + "/")


@dataclass(frozen=True)
class Location:
    """One place a job reads or writes: the field a tenant wrote it in (the reference, for one another job gives),
    the URI, and the producer whose output it is (None: the job's own field)."""

    path: str
    uri: str
    read: bool
    dataset: bool = False
    producer: str | None = None


def locations(job: BertTrainingJob) -> list[Location]:
    """Every location of the job (references resolved where they are: a reference not resolved yet has no URI)."""
    spec = job.spec
    model = spec.model
    found: list[Location] = []
    output = getattr(spec.output, "uri", None)
    if output is not None:
        found.append(Location("spec.output.uri", output, read=False))
    for path, uri, ref, producer in (
            ("spec.dataset.uri", spec.dataset.uri, "spec.dataset.fromJob", spec.dataset.from_job),
            ("spec.model.initCheckpoint", model.init_checkpoint, "spec.model.initCheckpointFrom.fromJob",
             model.init_checkpoint_from.from_job if model.init_checkpoint_from is not None else None),
            ("spec.model.vocab", model.vocab, "spec.model.vocabFrom.fromJob",
             model.vocab_from.from_job if model.vocab_from is not None else None)):
        if uri is not None:
            found.append(Location(ref if producer else path, uri, read=True, dataset=path == "spec.dataset.uri",
                                  producer=producer))
    return found


def _allowed(location: Location, limits: PolicyLimits) -> Iterator[list[str]]:
    """Each list of prefixes one of which must hold `location` under `limits` (every list must be met). Where the
    namespace's jobs may write is readable too: a pipeline's next job reads what the one before it wrote."""
    if not location.read:
        if limits.allowed_output_prefixes is not None:
            yield limits.allowed_output_prefixes
        return
    written = limits.allowed_output_prefixes or []
    if location.dataset and limits.allowed_dataset_prefixes is not None:
        yield [*limits.allowed_dataset_prefixes, *written]
    if limits.allowed_read_prefixes is not None:
        yield [*limits.allowed_read_prefixes, *written]


def location_errors(job: BertTrainingJob, policies: list[BertTrainingPolicy], *,
                    references_only: bool = False) -> Iterator[FieldError]:
    """Every location of the job not under what a policy allows (`references_only`: only those another job gave,
    which the operator knows once the references are resolved)."""
    meta = job.metadata
    for policy in policies:
        by = f"BertTrainingPolicy {policy.metadata.name}"
        for location in locations(job):
            if references_only and location.producer is None:
                continue
            for prefixes in _allowed(location, policy.spec.limits):
                filled = list(dict.fromkeys(fill(prefix, meta.namespace, meta.name) for prefix in prefixes))
                if any(_under(location.uri, prefix) for prefix in filled):
                    continue
                what = shown(location.uri)
                if location.producer is not None:
                    what = f"BertTrainingJob {location.producer} gives {what}, which"
                yield FieldError(location.path, f"{what} is not under a location allowed by {by}: "
                                                f"{', '.join(filled) or '(none)'}")
                break  # one line per location and policy


def _size_errors(job: BertTrainingJob, limits: PolicyLimits, by: str) -> Iterator[FieldError]:
    """CPU and memory per worker and per job (workers x the per-worker amount). A job that sets none has pods
    without a limit, which could take a whole node: under such a limit it must set one (or get one as a default)."""
    res = job.spec.resources
    for what, unit, given, per_job, per_worker in (
            ("cpu", "CPUs", res.cpu, limits.max_cpu_per_job, limits.max_cpu_per_worker),
            ("memory", "memory", res.memory, limits.max_memory_per_job, limits.max_memory_per_worker)):
        path = f"spec.resources.{what}"
        if per_job is None and per_worker is None:
            continue
        if given is None:
            bounds = [f"{limit} per {scope}" for limit, scope in ((per_worker, "worker"), (per_job, "job")) if limit is not None]
            yield FieldError(path, f"required by {by}: at most {' and '.join(bounds)}")
            continue
        amount = quantity(given)
        if per_worker is not None and amount > quantity(per_worker):
            yield FieldError(path, f"{given} exceeds {per_worker} {unit} per worker allowed by {by}")
        total = amount * res.workers
        if per_job is not None and total > quantity(per_job):
            yield FieldError(path, f"{given} exceeds {per_job} {unit} per job allowed by {by} "
                                   f"({res.workers} x {given} = {shown_quantity(total, given)})")


def limit_errors(job: BertTrainingJob, policies: list[BertTrainingPolicy]) -> Iterator[FieldError]:
    """Every limit of every policy the job (defaults and forced values applied) breaks."""
    spec = job.spec
    res = spec.resources
    gpus = res.workers * res.gpus_per_worker
    for policy in policies:
        limits, by = policy.spec.limits, f"BertTrainingPolicy {policy.metadata.name}"
        if limits.max_gpus_per_job is not None and gpus > limits.max_gpus_per_job:
            yield FieldError("spec.resources.gpusPerWorker", (
                f"{res.gpus_per_worker} exceeds {limits.max_gpus_per_job} GPUs per job allowed by {by} "
                f"({res.workers} x {res.gpus_per_worker} = {gpus})"))
        if limits.max_workers is not None and res.workers > limits.max_workers:
            yield FieldError("spec.resources.workers", f"{res.workers} exceeds {limits.max_workers} workers allowed by {by}")
        if limits.max_gpus_per_worker is not None and res.gpus_per_worker > limits.max_gpus_per_worker:
            yield FieldError("spec.resources.gpusPerWorker",
                             f"{res.gpus_per_worker} exceeds {limits.max_gpus_per_worker} GPUs per worker allowed by {by}")
        yield from _size_errors(job, limits, by)
        if limits.allowed_images is not None and spec.image is not None and not any(
                fnmatch.fnmatchcase(spec.image, glob) for glob in limits.allowed_images):
            yield FieldError("spec.image", f"{shown(spec.image)} is not allowed by {by}: the image must match one of "
                                           f"{', '.join(limits.allowed_images) or '(none)'}")
        if limits.allowed_presets is not None and spec.model.preset not in limits.allowed_presets:
            yield FieldError("spec.model.preset", f"{spec.model.preset!r} is not allowed by {by}; allowed: "
                                                  f"{', '.join(limits.allowed_presets) or '(none)'}")
        if limits.allow_custom_model_config is False and spec.model.config is not None:
            yield FieldError("spec.model.config", f"a custom model config is not allowed by {by}; use a preset")
        # Where it reads and writes; a reference (fromJob) not resolved yet is checked once it is (reconcile/dependency_step.py).
        yield from location_errors(job, [policy])
        deadline = spec.run_policy.active_deadline_seconds
        if limits.max_active_deadline_seconds is not None:
            if deadline is None:
                yield FieldError("spec.runPolicy.activeDeadlineSeconds",
                                 f"required by {by}: at most {limits.max_active_deadline_seconds}")
            elif deadline > limits.max_active_deadline_seconds:
                yield FieldError("spec.runPolicy.activeDeadlineSeconds",
                                 f"{deadline} exceeds {limits.max_active_deadline_seconds} allowed by {by}")
        yield from serve_limit_errors(job, [policy])
        yield from sweep_limit_errors(job, limits, by)
        pretrain = spec.task.pretrain
        if limits.max_train_steps is not None and pretrain is not None and pretrain.train_steps > limits.max_train_steps:
            yield FieldError("spec.task.pretrain.trainSteps",
                             f"{pretrain.train_steps} exceeds {limits.max_train_steps} steps allowed by {by}")


def forbidden_errors(spec: Mapping[str, Any], policies: list[BertTrainingPolicy]) -> Iterator[FieldError]:
    """Fields the tenant set although a policy reserves them for the platform."""
    for policy in policies:
        for dotted in policy.spec.limits.forbidden_fields:
            if _get(spec, tuple(dotted.split("."))) is not None:
                yield FieldError(f"spec.{dotted}", f"may not be set in this namespace (BertTrainingPolicy "
                                                  f"{policy.metadata.name} sets it); remove it")


# ---------------------------------------------------------------- deciding


def template_errors(asked: Iterable[str], policies: list[BertTrainingPolicy], namespace: str) -> Iterator[FieldError]:
    """The job templates a job asks for that no policy of its namespace offers (forced ones are offered too).

    Why fail closed: a template puts the platform's containers, devices and volumes into the pods; only the
    platform says which a namespace may use, so without a policy that allows one, none is."""
    offered = {t for p in policies for t in (*p.spec.templates.allowed, *p.spec.templates.forced)}
    for index, name in enumerate(asked):
        if name not in offered:
            yield FieldError(f"spec.templates[{index}]", f"template {name!r} is not offered in namespace {namespace} "
                             f"(the policies allow: {', '.join(sorted(offered)) or 'none'})")


def _applies(written: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    """Whether a default for `path` applies to the job as written: a serve default only to a job that asks to be
    served (a default must not start an InferenceService), and its replica bounds not to one that fixes replicas."""
    if path[0] != "serve":
        return True
    serve = written.get("serve")
    if not isinstance(serve, Mapping):
        return False
    return not (path[1] in ("minReplicas", "maxReplicas") and serve.get("replicas") is not None)


def sweep_limit_errors(job: BertTrainingJob, limits: PolicyLimits, by: str) -> Iterator[FieldError]:
    """A sweep's trials and trials at once beyond a policy's maxTrials and maxParallelTrials: each trial holds the
    job's GPUs, so a sweep is its trial count (or maxParallel) times the job's size."""
    task = task_of(job.spec)
    sweep = getattr(task.settings(job.spec), "sweep", None)
    if sweep is None:
        return
    field = f"spec.task.{task.name}.sweep"
    count = len(trials(task.settings(job.spec)))
    if limits.max_trials is not None and count > limits.max_trials:
        yield FieldError(field, f"makes {count} trials, more than the {limits.max_trials} allowed by {by}")
    if limits.max_parallel_trials is not None and sweep.max_parallel > limits.max_parallel_trials:
        yield FieldError(f"{field}.maxParallel", f"{sweep.max_parallel} exceeds {limits.max_parallel_trials} trials at "
                                                 f"once allowed by {by}")


def serve_limit_errors(job: BertTrainingJob, policies: list[BertTrainingPolicy]) -> Iterator[FieldError]:
    """Every serving limit the job's spec.serve breaks. Checked whenever the InferenceService is made or changed, a
    started job's included: spec.serve may be added after the job ran, and the limits must hold then too."""
    serve = job.spec.serve
    if serve is None:
        return
    for policy in policies:
        limits, by = policy.spec.limits, f"BertTrainingPolicy {policy.metadata.name}"
        if limits.allow_serving is False:
            yield FieldError("spec.serve", f"serving is not allowed by {by}; remove spec.serve")
            continue
        if limits.max_serve_replicas is not None:
            most = serve.replica_bounds()[1]  # (unset: 1, within any limit)
            field = "replicas" if serve.replicas is not None else "maxReplicas"
            if most > limits.max_serve_replicas:
                yield FieldError(f"spec.serve.{field}", f"{most} exceeds {limits.max_serve_replicas} replicas allowed by {by}")
        if limits.max_serve_gpus is not None and serve.resources.gpus > limits.max_serve_gpus:
            yield FieldError("spec.serve.resources.gpus", f"{serve.resources.gpus} exceeds {limits.max_serve_gpus} GPUs "
                                                          f"per replica allowed by {by}")


def decide(body: Mapping[str, Any], labels: Mapping[str, str], policies: Iterable[BertTrainingPolicy]) -> Decision:
    """The job `body` (as written) under the policies that select its namespace (labelled `labels`).

    Raises SpecError when the job with the policies' values is no valid job (the same errors `parse_job` gives);
    otherwise returns the Decision, whose violations are empty when every policy allows the job."""
    meta = body.get("metadata") or {}
    namespace, name = meta.get("namespace", "default"), meta.get("name", "")
    chosen = selecting(policies, labels)
    raw_spec = body.get("spec")
    written: dict[str, Any] = raw_spec if isinstance(raw_spec, dict) else {}
    if not chosen:
        alone = parse_job(dict(body))
        return Decision(violations=(*unset_errors(alone), *template_errors(alone.spec.templates, [], namespace)), job=alone)
    defaults, default_conflicts = _gathered(chosen, "defaults", namespace, name)
    forced, forced_conflicts = _gathered(chosen, "forced", namespace, name)
    spec = copy.deepcopy(written)
    applied: list[Applied] = []
    for path, (value, policy) in sorted(defaults.items()):
        if _get(written, path) is None and path not in forced and _applies(written, path):
            _set(spec, path, value)
            applied.append(Applied(format_path(("spec", *path)), value, "default", policy))
    for path, (value, policy) in sorted(forced.items()):
        _set(spec, path, value)
        applied.append(Applied(format_path(("spec", *path)), value, "forced", policy))
    asked = [str(t) for t in written.get("templates") or []]
    forcing = [(t, p.metadata.name) for p in sorted(chosen, key=lambda p: p.metadata.name) for t in p.spec.templates.forced]
    forced_templates = list(dict.fromkeys(t for t, _ in forcing))
    if forced_templates:
        spec["templates"] = [*forced_templates, *(t for t in dict.fromkeys(asked) if t not in forced_templates)]
        applied.append(Applied("spec.templates", forced_templates, "forced",
                               ", ".join(dict.fromkeys(p for _, p in forcing))))
    merged = {**body, "spec": spec}
    job = parse_job(merged)
    violations = [*(c.error() for c in (*default_conflicts, *forced_conflicts)), *forbidden_errors(written, chosen),
                  *limit_errors(job, chosen), *unset_errors(job), *template_errors(asked, chosen, namespace)]
    return Decision(tuple(p.metadata.name for p in chosen), tuple(applied), tuple(violations), job)


def parse_policy(document: Any) -> BertTrainingPolicy:
    """A policy document validated, every error with its field path (SpecError), as the webhook refuses them."""
    if not isinstance(document, dict):
        raise SpecError([FieldError("<document>", "must be a mapping (a BertTrainingPolicy)")])
    try:
        policy = BertTrainingPolicy.model_validate(document)
    except ValidationError as exc:
        raise SpecError(from_validation_error(exc, BertTrainingPolicy)) from None
    errors = list(_policy_rules(policy))
    if errors:
        raise SpecError(errors)
    return policy


def selector_of(document: Any) -> LabelSelector | None:
    """The namespaceSelector of a policy document that may be invalid otherwise; None when the selector itself is
    malformed (then no one can say which namespaces the platform team meant, so the caller must assume all)."""
    spec = document.get("spec", {}) if isinstance(document, dict) else None
    raw = spec.get("namespaceSelector", {}) if isinstance(spec, dict) else None  # no selector: every namespace
    try:
        selector = LabelSelector.model_validate(raw)
    except ValidationError:
        return None
    return None if any(_selector_rules(selector)) else selector


def _selector_rules(selector: LabelSelector) -> Iterator[FieldError]:
    """What metav1.LabelSelector's own validation refuses beyond the schema (the policy CRD's CEL says the same)."""
    for i, requirement in enumerate(selector.match_expressions):
        path = f"spec.namespaceSelector.matchExpressions[{i}].values"
        if requirement.operator in ("In", "NotIn") and not requirement.values:
            yield FieldError(path, f"must not be empty with operator {requirement.operator}")
        if requirement.operator in ("Exists", "DoesNotExist") and requirement.values:
            yield FieldError(path, f"must be empty with operator {requirement.operator}")


def _policy_rules(policy: BertTrainingPolicy) -> Iterator[FieldError]:
    """Every rule a policy must meet beyond its schema; each has a CEL twin in the CRD (api/crd.py), so that the
    API server refuses such a policy even with the webhook off."""
    yield from _selector_rules(policy.spec.namespace_selector)
    forced = values_of(policy.spec.forced, "{namespace}", "{name}")
    for path in values_of(policy.spec.defaults, "{namespace}", "{name}"):
        if path in forced:
            field_path = format_path(("spec", *path))
            yield FieldError("spec.defaults", f"sets {field_path}, which spec.forced also sets: the default would never "
                                              "apply; keep one of them")


def conflicts(policies: Iterable[BertTrainingPolicy], namespaces: Mapping[str, Mapping[str, str]]) -> dict[str, list[str]]:
    """For the policies' status: by policy name, the conflicts it is part of in the namespaces given (name -> labels),
    as 'spec.queueName in namespace team-a: BertTrainingPolicies a and b give different ...' lines."""
    found: dict[str, list[str]] = {}
    policies = list(policies)
    for namespace, labels in sorted(namespaces.items()):
        chosen = selecting(policies, labels)
        for part in ("defaults", "forced"):
            for conflict in _gathered(chosen, part, namespace, "{name}")[1]:
                error = conflict.error()
                for policy in (conflict.first[0], conflict.second[0]):
                    found.setdefault(policy, []).append(f"{error.path} in namespace {namespace}: {error.message}")
    return found

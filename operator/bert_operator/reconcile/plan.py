"""Decide: a job's next status, the MPIJob writes it needs and the Events it deserves, as a pure function.

:func:`plan` sees the job as the API server holds it, its status as last
written and the MPIJobs just observed, and answers what should be: no I/O, no
clock (``now`` is given), so every transition is a unit test of milliseconds.

A plan that asks for MPIJob writes (create a stage, pass a suspend toggle on)
is provisional: the reconciler applies them, adds what the API server answered
to the observation and plans again, until a plan asks for none. That final
plan's status is written once. Re-planning on the answer, rather than guessing
it, is what makes a 409 adopt the existing MPIJob (owned or not), and what lets
local mode report the conditions its processes set at once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .. import dependencies as deps
from .. import kueue
from .. import status as sm
from ..api import BertTrainingJob, SpecError
from ..api.parse import parse_job
from ..api.presets import KIND
from ..api.required import unset_errors
from ..api.stages import Stage
from ..api.locations import join
from bert_common.contract import EXPORT_FOLDER, format_utc, parse_utc
from ..policy import PoliciesUnreadable, PolicyInput, decide, location_errors, selecting
from ..render import RenderSettings, render_mpijob
from ..tasks import report_uri, stages_of, task_of
from .failures import classify
from .observe import Deleted, Observed, RefusedCreate
from .recovery import RecoverySettings, due_at, pending_restart
from . import usage
from .. import reasons


@dataclass(frozen=True)
class CreateMPIJob:
    """Create a stage's MPIJob (a 409 adopts the one that exists)."""

    stage: str
    body: dict[str, Any]


@dataclass(frozen=True)
class PatchMPIJob:
    """Merge-patch a stage's MPIJob (the only one: passing runPolicy.suspend on, for a job without a queue)."""

    namespace: str
    name: str
    patch: dict[str, Any]


@dataclass(frozen=True)
class DeleteMPIJob:
    """Delete a stage's failed MPIJob (that uid only, its pods first) so that the stage can be created again."""

    namespace: str
    name: str
    uid: str
    mpijob: dict[str, Any]


@dataclass(frozen=True)
class PatchWorkload:
    """Merge-patch the Kueue Workload of a queued stage's MPIJob (the only one: spec.active from runPolicy.suspend)."""

    namespace: str
    name: str
    mpijob: str
    patch: dict[str, Any]


Action = CreateMPIJob | PatchMPIJob | DeleteMPIJob | PatchWorkload


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event about the job: Normal or Warning, a CamelCase reason, a message."""

    kind: str
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    """What one reconcile decided."""

    status: dict[str, Any]
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = field(default=())


def canonical(value: Any) -> Any:
    """`value` with every whole-number float as an int, as the API server stores JSON numbers (2.0 comes back 2)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: canonical(item) for key, item in value.items()}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


def spec_hash(spec: dict[str, Any]) -> str:
    """Hash of the fields that cannot change once a job started (all but runPolicy.suspend), by value:
    a spec read back from the API server (numbers normalised) hashes as the one that was written."""
    frozen = canonical(json.loads(json.dumps(spec)))
    frozen.get("runPolicy", {}).pop("suspend", None)
    return hashlib.sha256(json.dumps(frozen, sort_keys=True).encode()).hexdigest()[:16]


def normalized_spec(job: BertTrainingJob) -> dict[str, Any]:
    """The spec with every default filled in: what the job runs, comparable across edits."""
    return job.spec.model_dump(by_alias=True, exclude_none=True, mode="json")


#: The status fields :func:`summary` writes.
SUMMARY_FIELDS = ("task", "model", "workers", "gpus")


def summary(job: BertTrainingJob) -> dict[str, Any]:
    """The columns `kubectl get btj` shows."""
    resources = job.spec.resources
    return {
        "task": task_of(job.spec).name,
        "model": job.spec.model.preset,
        "workers": resources.workers,
        "gpus": resources.workers * resources.gpus_per_worker,
    }


def needs_work(body: Mapping[str, Any]) -> bool:
    """False for a finished job whose spec has not changed since (nothing to read, nothing to decide), and for a
    job being deleted (its MPIJobs go with it; making one now would only feed the garbage collector)."""
    meta = body.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return False
    status = body.get("status") or {}
    return not (status.get("phase") in sm.TERMINAL_PHASES and status.get("observedGeneration") == meta.get("generation"))


@dataclass(frozen=True)
class Context:
    """What every step of one plan shares: the job's body, its old status, the observation, now, the settings."""

    body: dict[str, Any]
    old: dict[str, Any]
    observed: Observed
    now: str
    settings: RenderSettings
    recovery: RecoverySettings


def plan(body: dict[str, Any], old: dict[str, Any], observed: Observed, now: str,
         settings: RenderSettings | None = None, recovery: RecoverySettings | None = None,
         parse: Callable[[dict[str, Any]], BertTrainingJob] = parse_job) -> Plan:
    """The next status of the job `body` given the MPIJobs `observed` (by name), with the writes and Events it needs.
    `parse` validates `body` (the reconciler's parses it once for all the rounds of one reconcile)."""
    ctx = Context(body, old, observed, now, settings or RenderSettings(), recovery or RecoverySettings())
    if not needs_work(body):
        return Plan(old)
    accepted = old.get("acceptedSpec")
    try:
        job = parse(body)
    except SpecError as exc:
        if accepted:  # running job, broken update: refuse it, keep running the accepted spec
            return _refuse_update(ctx, sm.errors_message(exc.errors, "spec is invalid: "), accepted)
        return _ended(ctx, exc.errors, reasons.INVALID_SPEC)
    if accepted and not _unchanged(body, accepted, job):
        return _refuse_update(ctx, "fields other than runPolicy.suspend cannot change after the job started", accepted)
    return _advance(ctx, job, body, refusal=None)


def _unchanged(body: dict[str, Any], accepted: dict[str, Any], job: BertTrainingJob) -> bool:
    """Whether the job's spec is the accepted one (runPolicy.suspend aside). Compared as stored first (every
    reconcile, no parsing), then with today's defaults filled into the accepted spec: a field an operator upgrade
    added, with its default, is not a change the user made."""
    current = spec_hash(normalized_spec(job))
    if spec_hash(accepted) == current:
        return True
    try:
        return spec_hash(normalized_spec(parse_job({**body, "spec": accepted}))) == current
    except SpecError:  # no longer valid: a change, and the refusal says why
        return False


def _ended(ctx: Context, errors: Any, reason: str, prefix: str = "", extra: dict[str, Any] | None = None,
           job: BertTrainingJob | None = None) -> Plan:
    """A job that cannot run as it is: Failed with `reason` and its field errors (the first few and a count: a spec
    with thousands of errors must still leave a status the API server takes), Ready=False with the same reason, a
    Warning Event, nothing created. An invalid spec also makes Valid False; a policy violation leaves Valid alone
    (the spec itself is valid); a dependency that cannot be met makes it True (it is)."""
    generation = ctx.body["metadata"].get("generation")
    message = sm.errors_message(list(errors), prefix)
    conditions = ctx.old.get("conditions") or []
    if reason == reasons.INVALID_SPEC:
        conditions = sm.set_condition(conditions, sm.VALID, False, reason, message, ctx.now, generation)
    elif reason in deps.REASONS:  # the spec is valid; the jobs it names cannot give it its inputs
        conditions = sm.set_condition(conditions, sm.VALID, True, reasons.VALID_SPEC, "spec is valid", ctx.now, generation)
    conditions = sm.ended_conditions(conditions, reason, message, ctx.now, generation)
    new = {**_columns(ctx, job), **(extra or {}), "phase": "Failed", "conditions": conditions,
           "observedGeneration": generation, "completionTime": ctx.now}
    return Plan(new, events=(Event("Warning", reason, message),))  # (bounded where every Event is posted: writer.py)


def _columns(ctx: Context, job: BertTrainingJob | None) -> dict[str, Any]:
    """The old status with the `kubectl get btj` columns of a job that ends before it started: its spec's, where the
    spec parses (a policy violation, a dependency), none where it does not (the columns of an earlier generation
    would describe a spec that is gone). A started job keeps the columns of what it ran."""
    if ctx.old.get("acceptedSpec"):
        return dict(ctx.old)
    base = {key: value for key, value in ctx.old.items() if key not in SUMMARY_FIELDS}
    return {**base, **summary(job)} if job is not None else base


def _refuse_update(ctx: Context, why: str, accepted: dict[str, Any]) -> Plan:
    """Keep running the accepted spec and say why the change was not applied; a suspend toggle still passes."""
    accepted_spec = accepted
    live_suspend = ((ctx.body.get("spec") or {}).get("runPolicy") or {}).get("suspend")
    if isinstance(live_suspend, bool):
        accepted_spec = {**accepted, "runPolicy": {**accepted.get("runPolicy", {}), "suspend": live_suspend}}
    written = {**ctx.body, "spec": accepted_spec}
    try:
        job = parse_job(written)
    except SpecError as exc:
        # The spec the job started with breaks a rule it passed then (an operator upgrade made the rules
        # stricter): no later stage can be rendered from it, so the job ends here, saying so.
        return _ended(ctx, exc.errors, reasons.INVALID_SPEC, prefix="the spec this job started with is no longer valid: ")
    return _advance(ctx, job, written, refusal=why)


def _govern(ctx: Context, job: BertTrainingJob, written: dict[str, Any]) -> tuple[BertTrainingJob, dict[str, Any] | None] | Plan:
    """The job as its namespace's BertTrainingPolicies make it (defaults, forced values), with its status.policy; or,
    for a job that has not started, the plan that fails it for breaking a policy (nothing is created).

    A started job is not judged again: a policy edited later gives its next stage the policy's current defaults
    and forced values, but its limits bind only jobs that have not started, and its output stays where the first
    MPIJob put it (status.resolved.output: a later stage reads the earlier one's checkpoints there). Fields a policy
    may give (api/required.py) are required here, once the policies had their chance."""
    given = ctx.observed.policy
    started = bool(ctx.old.get("acceptedSpec"))
    if _hold(ctx) is not None:  # a running stage goes on; a new MPIJob waits (_follow)
        return _recorded_output(ctx, job), ctx.old.get("policy")
    assert not isinstance(given, PoliciesUnreadable)  # _hold held the job for those
    if given is None or not selecting(given.policies, given.labels):  # no policy here: nothing to merge or parse
        unset = [] if started else list(unset_errors(job))
        if unset:
            return _ended(ctx, unset, reasons.INVALID_SPEC)
        return _recorded_output(ctx, job), None
    try:
        decision = decide(written, given.labels, given.policies)
    except SpecError as exc:
        return _ended(ctx, exc.errors, reasons.POLICY_VIOLATION, job=job,
                      prefix="the job with its BertTrainingPolicies' values is not valid: ")
    if decision.violations and not started:
        return _ended(ctx, decision.violations, reasons.POLICY_VIOLATION, extra={"policy": decision.status()},
                      job=decision.job or job)
    return _recorded_output(ctx, decision.job or job), decision.status()


def _recorded_output(ctx: Context, job: BertTrainingJob) -> BertTrainingJob:
    """A started job's output as its first MPIJob had it (status.resolved.output), whatever the policies say now."""
    recorded = (ctx.old.get("resolved") or {}).get("output")
    if not ctx.old.get("acceptedSpec") or not isinstance(recorded, dict) or not recorded.get("uri"):
        return job
    output = job.spec.output.model_copy(update={
        "uri": recorded.get("uri"), "endpoint": recorded.get("endpoint"), "region": recorded.get("region"),
        "credentials_secret": recorded.get("credentialsSecret")})
    return job.model_copy(update={"spec": job.spec.model_copy(update={"output": output})})


@dataclass(frozen=True)
class Held:
    """No MPIJob may be made now: the policies cannot be read, or one that selects the namespace is invalid (fail
    closed; a running stage goes on). The next reconcile, the resync at the latest, looks again."""

    reason: str
    message: str


def _hold(ctx: Context) -> Held | None:
    """Why the next MPIJob may not be made yet, if it may not."""
    given = ctx.observed.policy
    if isinstance(given, PoliciesUnreadable):
        return Held(reasons.POLICIES_UNREADABLE,
                    f"waiting to create the next MPIJob: the BertTrainingPolicies cannot be read ({given.reason})")
    holding = given.holding() if given is not None else []
    if holding:
        said = "; ".join(policy.message() for policy in holding[:3])
        more = f" (and {len(holding) - 3} more invalid policies)" if len(holding) > 3 else ""
        return Held(reasons.POLICY_INVALID, f"waiting to create the next MPIJob until the platform team fixes or "
                                              f"deletes it: {said}{more}")
    return None


def _resolve(ctx: Context, job: BertTrainingJob, written: dict[str, Any]) -> tuple[BertTrainingJob, list[dict[str, Any]]] | Plan:
    """The job with the locations of the jobs it takes inputs from, and status.dependencies; or the plan that makes it
    wait for them (nothing is created) or fails it. A started job uses what it recorded and reads no other job."""
    record = ctx.old.get("resolved")
    if ctx.old.get("acceptedSpec") and record:
        return deps.apply_record(job, record), list(ctx.old.get("dependencies") or [])
    spec = written.get("spec") or {}
    if not deps.raw_references(spec):
        return job, []
    outcome = deps.resolve(job, spec, ctx.observed.producers, list(ctx.old.get("dependencies") or []))
    if isinstance(outcome, deps.Resolved):
        # What another job gives is known only now: the policies' location limits bind it as they bind the job's own.
        given = ctx.observed.policy
        if isinstance(given, PolicyInput):
            refused = list(location_errors(outcome.job, selecting(given.policies, given.labels), references_only=True))
            if refused:
                return _ended(ctx, refused, reasons.POLICY_VIOLATION, extra={"dependencies": outcome.dependencies},
                              job=job)
        return outcome.job, outcome.dependencies
    if isinstance(outcome, deps.Broken):
        return _ended(ctx, outcome.errors, outcome.reason, extra={"dependencies": outcome.dependencies}, job=job)
    return _waiting_for_jobs(ctx, job, outcome)


def _waiting_for_jobs(ctx: Context, job: BertTrainingJob, waiting: deps.Waiting) -> Plan:
    """Pending, Waiting=True and Ready=False with DependencyNotReady naming the jobs; one Event when it starts
    waiting (a producer's progress does not rewrite the status)."""
    generation = ctx.body["metadata"].get("generation")
    before = sm.condition_of(ctx.old, sm.WAITING) or {}
    conditions = ctx.old.get("conditions") or []
    conditions = sm.set_condition(conditions, sm.VALID, True, reasons.VALID_SPEC, "spec is valid", ctx.now, generation)
    for kind in (sm.WAITING, sm.READY):
        conditions = sm.set_condition(conditions, kind, kind == sm.WAITING, reasons.DEPENDENCY_NOT_READY, waiting.message,
                                      ctx.now, generation)
    new = {**ctx.old, **summary(job), "phase": "Pending", "conditions": conditions, "observedGeneration": generation,
           "dependencies": waiting.dependencies}
    events = () if before.get("status") == "True" else (Event("Normal", reasons.DEPENDENCY_NOT_READY, waiting.message),)
    return Plan(new, events=events)


def _waiting_for_policies(ctx: Context, base: dict[str, Any], held: Held) -> Plan:
    """A stage to create while the policies cannot be read or one is invalid: nothing is created, the job says why
    (Ready=False, a Warning Event once), and the next reconcile (the resync at the latest) tries again."""
    generation = ctx.body["metadata"].get("generation")
    before = sm.condition_of(base, sm.READY) or {}
    conditions = sm.set_condition(base.get("conditions") or [], sm.READY, False, held.reason, held.message,
                                  ctx.now, generation)
    new = {**base, "phase": base.get("phase") or "Pending", "conditions": conditions}
    events = () if before.get("reason") == held.reason else (Event("Warning", held.reason, held.message),)
    return Plan(new, events=events)


def _owned(mpijob: Mapping[str, Any], uid: str | None) -> bool:
    owners = (mpijob.get("metadata") or {}).get("ownerReferences") or []
    return uid is None or any(o.get("uid") == uid for o in owners)


def _earlier_incarnation(mpijob: Mapping[str, Any], meta: Mapping[str, Any]) -> str | None:
    """The uid of a deleted BertTrainingJob of the same name that still owns `mpijob`, if that is whose it is.

    `kubectl delete` then `apply` before the garbage collector has removed the old job's MPIJobs
    finds them under our names; they go away on their own, so the new job waits rather than fails."""
    for owner in (mpijob.get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("kind") == KIND and owner.get("name") == meta.get("name") and owner.get("uid") != meta.get("uid"):
            return str(owner.get("uid"))
    return None


def _stage_queue(entry: Mapping[str, Any], mpijob: Mapping[str, Any]) -> str | None:
    """The Kueue LocalQueue of a stage's MPIJob: its queue-name label (what Kueue acts on), else the queue the stage
    recorded when it was made. Not the job's queueName now: a policy deleted or edited since must not take a queued
    stage from Kueue (nor hand an unqueued one to it)."""
    label = ((mpijob.get("metadata") or {}).get("labels") or {}).get(kueue.QUEUE_LABEL)
    return label or entry.get("queueName") or None


def _suspend_patch(job: BertTrainingJob, mpijob: Mapping[str, Any], observed: Observed,
                   queue: str | None) -> PatchMPIJob | PatchWorkload | None:
    """Pass a runPolicy.suspend toggle on to a stage that is still running: to its MPIJob, or, for a queued stage
    (Kueue owns the MPIJob's suspend: never written here), to its Workload's spec.active."""
    if sm.stage_phase(dict(mpijob)).phase in sm.TERMINAL_PHASES:
        return None
    want = job.spec.run_policy.suspend
    meta = mpijob["metadata"]
    if queue:
        workload = observed.workloads.get(meta["name"])
        patch = kueue.activation_patch(workload, want)
        if workload is None or isinstance(workload, kueue.NotInstalled) or patch is None:  # (no patch for those)
            return None
        return PatchWorkload(meta["namespace"], workload["metadata"]["name"], meta["name"], patch)
    have = bool(((mpijob.get("spec") or {}).get("runPolicy") or {}).get("suspend", False))
    if want == have:
        return None
    return PatchMPIJob(meta["namespace"], meta["name"], {"spec": {"runPolicy": {"suspend": want}}})


@dataclass(frozen=True)
class Followed:
    """One stage's part of the next status: its phase, its status entry, and an Event it deserves."""

    phase: sm.StagePhase
    entry: dict[str, Any]
    event: Event | None = None


def _restart_wait(ctx: Context, job: BertTrainingJob, entry: dict[str, Any]) -> Followed:
    """A stage between the delete of its failed MPIJob and its re-creation (once that MPIJob is gone and the backoff
    is over); the same words all along, so waiting writes nothing."""
    limit = job.spec.run_policy.max_restarts
    due = format_utc(due_at(entry, ctx.recovery))
    message = f"restart {entry.get('restarts')} of {limit} (not before {due}): {entry.get('lastRestartReason')}"
    return Followed(sm.StagePhase("Restarting", reasons.RESTART_SCHEDULED, message), {**entry, "phase": "Restarting"})


def _failed(ctx: Context, job: BertTrainingJob, entry: dict[str, Any], mpijob: dict[str, Any],
            deleting: bool) -> Followed | DeleteMPIJob:
    """A stage whose MPIJob failed: restart it (delete it first) if the infrastructure failed it and restarts are
    left, else fail the job with the cause."""
    meta = mpijob["metadata"]
    name, uid = meta["name"], str(meta.get("uid") or "")
    delete = DeleteMPIJob(meta.get("namespace", "default"), name, uid, mpijob)
    if uid and uid == entry.get("restartedMpiJobUid"):  # this failure was counted: only its delete is left
        return _restart_wait(ctx, job, entry) if deleting else delete
    failure = classify(mpijob, ctx.observed.pods.get(name, ()))
    end = usage.attempt_end(mpijob, ctx.now)
    # Closed once: a failed stage's entry already has its completionTime when this is planned again.
    closed = entry if entry.get("completionTime") else usage.close_attempt(entry, mpijob, end)
    failed = {**closed, "phase": "Failed", "completionTime": (mpijob.get("status") or {}).get("completionTime") or ctx.now}
    if not failure.retry:
        return Followed(sm.StagePhase("Failed", failure.reason, failure.message), failed)
    restarts, limit = int(entry.get("restarts") or 0), job.spec.run_policy.max_restarts
    if restarts >= limit:
        message = (f"MPIJob {name} failed for an infrastructure reason after {restarts} restart(s) "
                   f"(runPolicy.maxRestarts: {limit}): {failure.message}")
        return Followed(sm.StagePhase("Failed", reasons.RESTART_LIMIT, message), failed)
    if not deleting:
        return delete
    counted = {**usage.close_attempt(entry, mpijob, end), "phase": "Restarting", "restarts": restarts + 1,
               "lastRestartTime": ctx.now,
               "lastRestartReason": f"{failure.reason}: {failure.message}"[:500], "restartedMpiJobUid": uid}
    counted.pop("queueName", None)  # the next MPIJob is a new one: its queue is the one it is made with
    waiting = _restart_wait(ctx, job, counted)
    return Followed(waiting.phase, waiting.entry,
                    Event("Warning", reasons.STAGE_RESTARTED, f"{entry['name']}: {waiting.phase.message}"))


def _queue_phase(job: BertTrainingJob, mpijob: dict[str, Any], phase: sm.StagePhase, observed: Observed,
                 queue: str | None) -> sm.StagePhase:
    """A queued stage that Kueue holds (suspended, and not by the user) is Queued, with Kueue's reason."""
    if not queue or job.spec.run_policy.suspend or phase.phase in sm.TERMINAL_PHASES:
        return phase
    if kueue.suspended(mpijob) or phase.phase == "Suspended":
        return kueue.queued_phase(mpijob, observed.workloads.get(mpijob["metadata"]["name"]))
    return phase


def _follow(ctx: Context, job: BertTrainingJob, stage: Stage, entry: dict[str, Any]) -> Followed | Action | Held:
    """The phase of one stage that has not succeeded, or the write it needs first."""
    meta = ctx.body["metadata"]
    name = stage.mpijob_name(job.metadata.name)
    seen = ctx.observed.get(name)
    if seen is None:
        if pending_restart(entry) and parse_utc(ctx.now) < due_at(entry, ctx.recovery):
            return _restart_wait(ctx, job, entry)
        return _hold(ctx) or CreateMPIJob(stage.name, render_mpijob(job, stage, ctx.settings))
    if isinstance(seen, RefusedCreate):  # sending it again cannot help: fail with the server's reason
        refused = f"the API server refused MPIJob {name} ({seen.status}): {seen.message}"
        return Followed(sm.StagePhase("Failed", reasons.REFUSED, refused),
                        {**entry, "phase": "Failed", "completionTime": ctx.now})
    deleting = isinstance(seen, Deleted) or bool((seen.get("metadata") or {}).get("deletionTimestamp"))
    mpijob = seen.mpijob if isinstance(seen, Deleted) else seen
    earlier = None if _owned(mpijob, meta.get("uid")) else _earlier_incarnation(mpijob, meta)
    if earlier is not None:
        return Followed(sm.StagePhase("Pending", reasons.WAITING_FOR_OLD_MPIJOB,
                                      f"MPIJob {name} still belongs to a deleted BertTrainingJob of this name (uid "
                                      f"{earlier}); waiting for the garbage collector to remove it"),
                        {**entry, "phase": "Pending"})
    if not _owned(mpijob, meta.get("uid")):
        return Followed(sm.StagePhase("Failed", reasons.NAME_CONFLICT,
                                      f"MPIJob {name} exists and is not owned by this BertTrainingJob"), entry)
    mpi_status = mpijob.get("status") or {}
    entry = {**entry, "name": stage.name, "mpiJob": name}
    entry.setdefault("startTime", mpi_status.get("startTime") or ctx.now)
    queue = _stage_queue(entry, mpijob)
    if queue:  # what the policies decided for this MPIJob holds until it ends, whatever they say later
        entry["queueName"] = queue
    phase = sm.stage_phase(mpijob)
    if phase.phase == "Failed":  # (a Deleted one is always a failed one: only those are deleted)
        return _failed(ctx, job, entry, mpijob, deleting)
    patch = _suspend_patch(job, mpijob, ctx.observed, queue)
    if patch is not None:
        return patch
    if name in ctx.observed.waiting and phase.phase == "Created":
        phase = sm.StagePhase(phase.phase, reasons.PODS_PENDING, ctx.observed.waiting[name])
    phase = _queue_phase(job, mpijob, phase, ctx.observed, queue)
    entry = _gpu_time(entry, mpijob, phase.phase, ctx.now)
    entry["phase"] = phase.phase
    if phase.phase in sm.TERMINAL_PHASES:
        entry.setdefault("completionTime", mpi_status.get("completionTime") or ctx.now)
    return Followed(phase, entry)


def _gpu_time(entry: dict[str, Any], mpijob: dict[str, Any], phase: str, now: str) -> dict[str, Any]:
    """The stage entry with its GPU time kept (reconcile/usage.py): an attempt opens when its MPIJob is seen Running,
    and closes when it succeeds (once: before its completionTime is set) or is suspended or taken back by Kueue."""
    if phase == "Running":
        return usage.open_attempt(entry, mpijob, now)
    if phase == "Succeeded" and not entry.get("completionTime"):
        return usage.close_attempt(entry, mpijob, usage.attempt_end(mpijob, now))
    if phase in ("Suspended", "Queued") and entry.get("runningSince"):
        return usage.close_attempt(entry, None, now)
    return entry


def _artifacts(job: BertTrainingJob, stages: list[Stage], entries: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The exports of the stages that succeeded (the trainer writes <stage output>/export/<format>/ before it exits
    0, or fails the stage), in stage order: what status.results.artifacts lists."""
    done = {entry.get("name") for entry in entries if entry.get("phase") == "Succeeded"}
    formats = task_of(job.spec).exports(job.spec)
    return [{"stage": stage.name, "format": fmt, "uri": join(report_uri(job.spec, stage), EXPORT_FOLDER, fmt)}
            for stage in stages if stage.name in done for fmt in formats]


def _advance(ctx: Context, written_job: BertTrainingJob, written: dict[str, Any], *, refusal: str | None) -> Plan:
    """Walk the stages in order: keep succeeded ones, create or follow the current one, stop there (the job as its
    policies make it; the spec it is accepted with is its own)."""
    governed = _govern(ctx, written_job, written)
    if isinstance(governed, Plan):
        return governed
    job, policy_status = governed
    resolved = _resolve(ctx, job, written)
    if isinstance(resolved, Plan):
        return resolved
    job, dependencies = resolved
    body, old, now = ctx.body, ctx.old, ctx.now
    generation = body["metadata"].get("generation")
    base = old
    if not old.get("acceptedSpec"):
        # Starting now: times left by an earlier verdict (an invalid spec, since corrected) are not this run's.
        base = {key: value for key, value in old.items() if key not in ("startTime", "completionTime")}
    stages = stages_of(job.spec)
    recorded = {s.get("name"): s for s in base.get("stages") or []}
    entries: list[dict[str, Any]] = []
    phases: list[sm.StagePhase] = []
    events: list[Event] = []
    restarted = False
    for stage in stages:
        entry = dict(recorded.get(stage.name) or {"name": stage.name})
        if entry.get("phase") == "Succeeded":
            phases.append(sm.StagePhase("Succeeded", sm.SUCCEEDED, ""))
            entries.append(entry)
            continue
        followed = _follow(ctx, job, stage, entry)
        if isinstance(followed, Held):
            return _waiting_for_policies(ctx, base, followed)
        if not isinstance(followed, Followed):
            return Plan(base, actions=(followed,))
        phases.append(followed.phase)
        entries.append(followed.entry)
        if followed.event is not None:
            events.append(followed.event)
            restarted = True
        if followed.phase.phase != "Succeeded":
            break
    phases += [sm.StagePhase("Pending", reasons.NOT_CREATED, "")] * (len(stages) - len(phases))

    state = sm.job_state(phases)
    conditions = sm.phase_conditions(base.get("conditions") or [], state, now, generation)
    if sm.condition_of(base, sm.WAITING) is not None:
        names = ", ".join(entry["name"] for entry in dependencies)
        conditions = sm.set_condition(conditions, sm.WAITING, False, reasons.DEPENDENCIES_READY, f"BertTrainingJob {names} succeeded",
                                      now, generation)
    if refusal is None:
        conditions = sm.set_condition(conditions, sm.SPEC_APPLIED, True, reasons.APPLIED, "spec applied", now, generation)
    else:
        conditions = sm.set_condition(conditions, sm.SPEC_APPLIED, False, reasons.IMMUTABLE, refusal, now, generation)
    current = stages[state.stage_index].name
    new = {
        **base,
        **summary(job),
        "phase": state.phase,
        "currentStage": current,
        "stages": entries,
        "conditions": conditions,
        "observedGeneration": generation,
    }
    # The spec is accepted once an MPIJob of it exists; a job none of whose MPIJobs could be made may still change.
    if old.get("acceptedSpec") or any(entry.get("mpiJob") for entry in entries):
        new["acceptedSpec"] = old.get("acceptedSpec") or normalized_spec(written_job)
        new["resolved"] = old.get("resolved") or deps.locations(job)  # what the MPIJobs hold; dependents read it
    if dependencies:
        new["dependencies"] = dependencies
    if policy_status is not None:
        new["policy"] = policy_status
    else:
        new.pop("policy", None)
    gpu_hours = usage.job_gpu_hours(entries)
    if gpu_hours is not None and (new.get("results") or {}).get("gpuHours") != gpu_hours:
        new["results"] = {**(new.get("results") or {}), "gpuHours": gpu_hours}
    artifacts = _artifacts(job, stages, entries)
    if artifacts and (new.get("results") or {}).get("artifacts") != artifacts:
        new["results"] = {**(new.get("results") or {}), "artifacts": artifacts}
    new.setdefault("startTime", now)
    if state.phase in sm.TERMINAL_PHASES:
        new.setdefault("completionTime", now)
        if state.phase == "Succeeded" and new.get("progress"):
            new["progress"] = {**new["progress"], "percent": 100, "display": "100%"}
    if refusal is not None:
        previous = sm.condition_of(old, sm.SPEC_APPLIED) or {}
        if previous.get("message") != refusal:  # said once per distinct refusal
            events.append(Event("Warning", reasons.IMMUTABLE, f"update not applied: {refusal}"))
    events[:0] = _stages_succeeded(recorded, entries, phases, current)
    # The job's phase before was its stage's then: a stage after it starts New (not from the phase of the one before).
    before = old.get("phase") if old.get("currentStage") in (None, current) else None
    transition = sm.event_for_transition(before, state.phase, current, state.message, state.reason)
    if transition and not restarted:  # a restart's own Warning says it all
        events.append(Event(*transition))
    return Plan(new, events=tuple(events))


def _stages_succeeded(recorded: Mapping[str, Mapping[str, Any]], entries: list[dict[str, Any]],
                      phases: list[sm.StagePhase], current: str) -> list[Event]:
    """A Normal Succeeded Event for each stage that succeeded in this sync and is not the job's current stage (the
    last stage's success is the job's, which its own transition says): the job goes on, but the stage ended."""
    out = []
    for entry, phase in zip(entries, phases):
        name = entry.get("name")
        before = (recorded.get(name) or {}).get("phase") if isinstance(name, str) else None
        said = sm.event_for_transition(before, phase.phase, str(entry.get("name")), phase.message)
        if phase.phase == "Succeeded" and said and entry.get("name") != current:
            out.append(Event(*said))
    return out

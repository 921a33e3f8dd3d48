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

This module is the walk: parse the job, govern it (policy_step.py), resolve its inputs (dependency_step.py), follow
each stage in order (follow.py, which hands a failed stage to recovery.py, a queued one to kueue_step.py and GPU
time to usage.py), then assemble the status and its Events. The steps answer with outcomes (decisions.py); the
status is written here only, on top of the old one, which is read through typed views (status_view.py) rather than
parsed into the pydantic models: a model would not give back the fields it does not know, nor absent as absent.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .. import dependencies as deps
from .. import reasons
from .. import status as sm
from ..api import BertTrainingJob, SpecError
from ..api.locations import join
from ..api.parse import parse_job
from ..api.stages import Stage
from bert_common.contract import EXPORT_FOLDER
from ..render import RenderSettings
from ..tasks import report_uri, stages_of, task_of
from . import cleanup_step, serve_step, sweep_step, usage
from .decisions import (Action, Context, CreateCleanupJob, CreateMPIJob, DeleteMPIJob, Ended, Event, Followed, Held, PatchMPIJob,
                        PatchWorkload, Plan)
from .dependency_step import resolve
from .follow import follow
from .observe import Observed, cleans, serves
from .policy_step import govern
from .recovery import RecoverySettings
from .status_view import (ACCEPTED_SPEC, COMPLETION_TIME, CONDITIONS, CURRENT_STAGE, DEPENDENCIES,
                          OBSERVED_GENERATION, PHASE, POLICY, PROGRESS, RESOLVED, RESULTS, STAGE_MPIJOB, STAGE_NAME,
                          STAGES, START_TIME, StageView, StatusView)

__all__ = ["Action", "Context", "CreateMPIJob", "DeleteMPIJob", "Event", "PatchMPIJob", "PatchWorkload", "Plan",
           "canonical", "needs_work", "normalized_spec", "plan", "spec_hash", "summary"]


def canonical(value: Any) -> Any:
    """`value` with every whole-number float as an int, as the API server stores JSON numbers (2.0 comes back 2)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: canonical(item) for key, item in value.items()}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


#: Spec fields that may change after the job started: what serves its model (serve_step.py) is not what it trained.
MUTABLE_FIELDS = ("serve",)


def spec_hash(spec: dict[str, Any]) -> str:
    """Hash of the fields that cannot change once a job started (all but runPolicy.suspend and spec.serve), by value:
    a spec read back from the API server (numbers normalised) hashes as the one that was written."""
    frozen = canonical(json.loads(json.dumps(spec)))
    frozen.get("runPolicy", {}).pop("suspend", None)
    for name in MUTABLE_FIELDS:
        frozen.pop(name, None)
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
    if serves(body) or cleans(body):  # a served job follows its InferenceService after it succeeded; a sweep its
        return True                   # cleanup Job
    return not (status.get("phase") in sm.TERMINAL_PHASES and status.get("observedGeneration") == meta.get("generation"))


def plan(body: dict[str, Any], old: dict[str, Any], observed: Observed, now: str,
         settings: RenderSettings | None = None, recovery: RecoverySettings | None = None,
         parse: Callable[[dict[str, Any]], BertTrainingJob] = parse_job) -> Plan:
    """The next status of the job `body` given the MPIJobs `observed` (by name), with the writes and Events it needs.
    `parse` validates `body` (the reconciler's parses it once for all the rounds of one reconcile)."""
    ctx = Context(body, old, observed, now, settings or RenderSettings(), recovery or RecoverySettings())
    if not needs_work(body):
        return Plan(old)
    accepted = ctx.status.accepted_spec
    try:
        job = parse(body)
    except SpecError as exc:
        if accepted:  # running job, broken update: refuse it, keep running the accepted spec (and its serve)
            return _refuse_update(ctx, sm.errors_message(exc.errors, "spec is invalid: "), accepted, live_serve=False)
        return _ended(ctx, Ended(exc.errors, reasons.INVALID_SPEC))
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


def _refuse_update(ctx: Context, why: str, accepted: dict[str, Any], *, live_serve: bool = True) -> Plan:
    """Keep running the accepted spec and say why the change was not applied; a suspend toggle still passes, and so
    does spec.serve from a spec that is valid (`live_serve`)."""
    accepted_spec = accepted
    live = ctx.body.get("spec") or {}
    live_suspend = (live.get("runPolicy") or {}).get("suspend")
    if isinstance(live_suspend, bool):
        accepted_spec = {**accepted, "runPolicy": {**accepted.get("runPolicy", {}), "suspend": live_suspend}}
    if live_serve:
        accepted_spec = {key: value for key, value in accepted_spec.items() if key not in MUTABLE_FIELDS}
        accepted_spec.update({key: live[key] for key in MUTABLE_FIELDS if key in live})
    written = {**ctx.body, "spec": accepted_spec}
    try:
        job = parse_job(written)
    except SpecError as exc:
        # The spec the job started with breaks a rule it passed then (an operator upgrade made the rules
        # stricter): no later stage can be rendered from it, so the job ends here, saying so.
        return _ended(ctx, Ended(exc.errors, reasons.INVALID_SPEC,
                                 prefix="the spec this job started with is no longer valid: "))
    return _advance(ctx, job, written, refusal=why)


def _advance(ctx: Context, written_job: BertTrainingJob, written: dict[str, Any], *, refusal: str | None) -> Plan:
    """The walk over a job that parses: its policies, its inputs, then its stages in order (keep succeeded ones,
    create or follow the current one, stop there), and the status and Events that come of them (the job as its
    policies make it; the spec it is accepted with is its own)."""
    governed = govern(ctx, written_job, written)
    if isinstance(governed, Ended):
        return _ended(ctx, governed)
    resolved = resolve(ctx, governed.job, written)
    if isinstance(resolved, Ended):
        return _ended(ctx, resolved)
    if isinstance(resolved, deps.Waiting):
        return _waiting_for_jobs(ctx, governed.job, resolved)
    base = _base(ctx)
    walked = _walk(ctx, resolved.job, base)
    if isinstance(walked, Plan):  # a write to make first, or a stage to create that the policies hold
        return walked
    served_stage, best_missing, chosen = None, False, None
    if sweep_step.is_sweep(resolved.job) and walked.state.phase == "Succeeded":  # the best trial's export is served
        chosen = sweep_step.best_stage(sweep_step.with_trials(resolved.job, walked.entries, base, walked.state.phase))
        served_stage = next((s for s in walked.stages if s.name == chosen), None)
        best_missing = served_stage is None
    served = serve_step.step(ctx, resolved.job, walked.state.phase, served_stage, best_missing)
    if served is not None and not isinstance(served, serve_step.Served):  # its InferenceService to write first
        return Plan(base, actions=(served,))
    cleaned = cleanup_step.step(ctx, resolved.job, walked.state.phase, walked.stages, chosen)
    if isinstance(cleaned, CreateCleanupJob):  # the other trials' checkpoints: the Job to make first
        return Plan(base, actions=(cleaned,))
    new = _status(ctx, resolved.job, written_job, base, walked, resolved.dependencies, governed.policy, refusal)
    if served is not None:
        if served.serving is None:
            new.pop(serve_step.SERVING, None)
        else:
            new[serve_step.SERVING] = served.serving
    if cleaned is not None:
        new = cleanup_step.with_cleanup(new, cleaned)
    return Plan(new, events=(*_events(ctx, walked, refusal), *(served.events if served is not None else ()),
                             *(cleaned.events if cleaned is not None else ())))


def _base(ctx: Context) -> dict[str, Any]:
    """The old status the new one is made on. Starting now: times left by an earlier verdict (an invalid spec, since
    corrected) are not this run's."""
    if ctx.status.started:
        return ctx.old
    return {key: value for key, value in ctx.old.items() if key not in (START_TIME, COMPLETION_TIME)}


@dataclass(frozen=True)
class Walked:
    """The stages as this sync left them: each one's entry and phase up to the current one, the Events they
    deserve, and the job's state from them."""

    stages: list[Stage]
    recorded: dict[Any, dict[str, Any]]
    entries: list[dict[str, Any]]
    phases: list[sm.StagePhase]
    events: list[Event]
    restarted: bool
    state: sm.JobState

    @property
    def current(self) -> str:
        return self.stages[self.state.stage_index].name


def _walk(ctx: Context, job: BertTrainingJob, base: dict[str, Any]) -> Walked | Plan:
    """Each stage in order: a succeeded one is kept, the first other one is followed (follow.py) and the walk stops
    there; a plan instead when that stage needs a write first, or waits for the policies. A sweep's trials are
    walked side by side instead (sweep_step.py)."""
    stages = stages_of(job.spec)
    recorded = {StageView(s).name: s for s in StatusView(base).stages}
    if sweep_step.is_sweep(job):
        trials = sweep_step.walk(ctx, job, stages, recorded)
        if isinstance(trials, Held):
            return _waiting_for_policies(ctx, base, trials)
        if isinstance(trials, tuple):
            return Plan(base, actions=trials)
        return Walked(stages, recorded, trials.entries, trials.phases, trials.events, trials.restarted, trials.state)
    entries: list[dict[str, Any]] = []
    phases: list[sm.StagePhase] = []
    events: list[Event] = []
    restarted = False
    for stage in stages:
        entry = dict(recorded.get(stage.name) or {STAGE_NAME: stage.name})
        if StageView(entry).phase == "Succeeded":
            phases.append(sm.StagePhase("Succeeded", sm.SUCCEEDED, ""))
            entries.append(entry)
            continue
        followed = follow(ctx, job, stage, entry)
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
    return Walked(stages, recorded, entries, phases, events, restarted, sm.job_state(phases))


def _status(ctx: Context, job: BertTrainingJob, written_job: BertTrainingJob, base: dict[str, Any], walked: Walked,
            dependencies: list[dict[str, Any]], policy_status: Any, refusal: str | None) -> dict[str, Any]:
    """The job's next status: `base` with what this sync decided written over it (every other field as it was)."""
    now, generation, state, entries = ctx.now, ctx.generation, walked.state, walked.entries
    if ctx.status.phase == state.phase == "Succeeded":  # a served job planned again after it ended: its run's
        conditions = StatusView(base).conditions        # conditions stand as the stage's end wrote them
    else:
        conditions = sm.phase_conditions(StatusView(base).conditions, state, now, generation)
    if sm.condition_of(base, sm.WAITING) is not None:
        names = ", ".join(entry["name"] for entry in dependencies)
        conditions = sm.set_condition(conditions, sm.WAITING, False, reasons.DEPENDENCIES_READY,
                                      f"BertTrainingJob {names} succeeded", now, generation)
    if refusal is None:
        conditions = sm.set_condition(conditions, sm.SPEC_APPLIED, True, reasons.APPLIED, "spec applied", now, generation)
    else:
        conditions = sm.set_condition(conditions, sm.SPEC_APPLIED, False, reasons.IMMUTABLE, refusal, now, generation)
    new = {
        **base,
        **summary(job),
        PHASE: state.phase,
        CURRENT_STAGE: walked.current,
        STAGES: entries,
        CONDITIONS: conditions,
        OBSERVED_GENERATION: generation,
    }
    # The spec is accepted once an MPIJob of it exists; a job none of whose MPIJobs could be made may still change.
    if ctx.status.started or any(entry.get(STAGE_MPIJOB) for entry in entries):
        new[ACCEPTED_SPEC] = ctx.status.accepted_spec or normalized_spec(written_job)
        new[RESOLVED] = ctx.status.resolved or deps.locations(job)  # what the MPIJobs hold; dependents read it
    if dependencies:
        new[DEPENDENCIES] = dependencies
    if policy_status is not None:
        new[POLICY] = policy_status
    else:
        new.pop(POLICY, None)
    gpu_hours = usage.job_gpu_hours(entries)
    if gpu_hours is not None and StatusView(new).results.get("gpuHours") != gpu_hours:
        new[RESULTS] = {**StatusView(new).results, "gpuHours": gpu_hours}
    if sweep_step.is_sweep(job):
        new = sweep_step.with_trials(job, entries, new, state.phase)
    artifacts = _artifacts(job, walked.stages, entries, sweep_step.best_stage(new))
    if artifacts and StatusView(new).results.get("artifacts") != artifacts:
        new[RESULTS] = {**StatusView(new).results, "artifacts": artifacts}
    new.setdefault(START_TIME, now)
    if state.phase in sm.TERMINAL_PHASES:
        new.setdefault(COMPLETION_TIME, now)
        if state.phase == "Succeeded" and new.get(PROGRESS):
            new[PROGRESS] = {**new[PROGRESS], "percent": 100, "display": "100%"}
    return new


def _events(ctx: Context, walked: Walked, refusal: str | None) -> tuple[Event, ...]:
    """The Events of this sync: the stages that succeeded on the way, a refused update (once per distinct refusal),
    and the job's phase change (unless a restart's own Warning says it all)."""
    events = list(walked.events)
    if refusal is not None:
        previous = sm.condition_of(ctx.old, sm.SPEC_APPLIED) or {}
        if previous.get("message") != refusal:  # said once per distinct refusal
            events.append(Event("Warning", reasons.IMMUTABLE, f"update not applied: {refusal}"))
    current, state = walked.current, walked.state
    events[:0] = _stages_succeeded(walked.recorded, walked.entries, walked.phases, current)
    # The job's phase before was its stage's then: a stage after it starts New (not from the phase of the one before).
    before = ctx.status.phase if ctx.status.current_stage in (None, current) else None
    transition = sm.event_for_transition(before, state.phase, current, state.message, state.reason)
    if transition and not walked.restarted:  # a restart's own Warning says it all
        events.append(Event(*transition))
    return tuple(events)


def _ended(ctx: Context, ended: Ended) -> Plan:
    """A job that cannot run as it is: Failed with the reason and its field errors (the first few and a count: a spec
    with thousands of errors must still leave a status the API server takes), Ready=False with the same reason, a
    Warning Event, nothing created. An invalid spec also makes Valid False; a policy violation leaves Valid alone
    (the spec itself is valid); a dependency that cannot be met makes it True (it is)."""
    generation, reason = ctx.generation, ended.reason
    message = sm.errors_message(list(ended.errors), ended.prefix)
    conditions = ctx.status.conditions
    if reason == reasons.INVALID_SPEC:
        conditions = sm.set_condition(conditions, sm.VALID, False, reason, message, ctx.now, generation)
    elif reason in deps.REASONS:  # the spec is valid; the jobs it names cannot give it its inputs
        conditions = sm.set_condition(conditions, sm.VALID, True, reasons.VALID_SPEC, "spec is valid", ctx.now,
                                      generation)
    conditions = sm.ended_conditions(conditions, reason, message, ctx.now, generation)
    new = {**_columns(ctx, ended.job), **(ended.extra or {}), PHASE: "Failed", CONDITIONS: conditions,
           OBSERVED_GENERATION: generation, COMPLETION_TIME: ctx.now}
    return Plan(new, events=(Event("Warning", reason, message),))  # (bounded where every Event is posted: writer.py)


def _columns(ctx: Context, job: BertTrainingJob | None) -> dict[str, Any]:
    """The old status with the `kubectl get btj` columns of a job that ends before it started: its spec's, where the
    spec parses (a policy violation, a dependency), none where it does not (the columns of an earlier generation
    would describe a spec that is gone). A started job keeps the columns of what it ran."""
    if ctx.status.started:
        return dict(ctx.old)
    base = {key: value for key, value in ctx.old.items() if key not in SUMMARY_FIELDS}
    return {**base, **summary(job)} if job is not None else base


def _waiting_for_jobs(ctx: Context, job: BertTrainingJob, waiting: deps.Waiting) -> Plan:
    """Pending, Waiting=True and Ready=False with DependencyNotReady naming the jobs; one Event when it starts
    waiting (a producer's progress does not rewrite the status)."""
    generation = ctx.generation
    before = sm.condition_of(ctx.old, sm.WAITING) or {}
    conditions = sm.set_condition(ctx.status.conditions, sm.VALID, True, reasons.VALID_SPEC, "spec is valid", ctx.now,
                                  generation)
    for kind in (sm.WAITING, sm.READY):
        conditions = sm.set_condition(conditions, kind, kind == sm.WAITING, reasons.DEPENDENCY_NOT_READY,
                                      waiting.message, ctx.now, generation)
    new = {**ctx.old, **summary(job), PHASE: "Pending", CONDITIONS: conditions, OBSERVED_GENERATION: generation,
           DEPENDENCIES: waiting.dependencies}
    events = () if before.get("status") == "True" else (Event("Normal", reasons.DEPENDENCY_NOT_READY, waiting.message),)
    return Plan(new, events=events)


def _waiting_for_policies(ctx: Context, base: dict[str, Any], held: Held) -> Plan:
    """A stage to create while the policies cannot be read or one is invalid: nothing is created, the job says why
    (Ready=False, a Warning Event once), and the next reconcile (the resync at the latest) tries again."""
    before = sm.condition_of(base, sm.READY) or {}
    conditions = sm.set_condition(StatusView(base).conditions, sm.READY, False, held.reason, held.message,
                                  ctx.now, ctx.generation)
    new = {**base, PHASE: StatusView(base).phase or "Pending", CONDITIONS: conditions}
    events = () if before.get("reason") == held.reason else (Event("Warning", held.reason, held.message),)
    return Plan(new, events=events)


def _artifacts(job: BertTrainingJob, stages: list[Stage], entries: list[dict[str, Any]],
               best: str | None = None) -> list[dict[str, str]]:
    """The exports of the stages that succeeded (the trainer writes <stage output>/export/<format>/ before it exits
    0, or fails the stage), in stage order: what status.results.artifacts lists. A sweep's are its best trial's only
    (`best`, once the sweep has ended)."""
    done = {StageView(entry).name for entry in entries if StageView(entry).phase == "Succeeded"}
    if sweep_step.is_sweep(job):
        done &= {best} if best else set()
    formats = task_of(job.spec).exports(job.spec)
    return [{"stage": stage.name, "format": fmt, "uri": join(report_uri(job.spec, stage), EXPORT_FOLDER, fmt)}
            for stage in stages if stage.name in done for fmt in formats]


def _stages_succeeded(recorded: Mapping[Any, Mapping[str, Any]], entries: list[dict[str, Any]],
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

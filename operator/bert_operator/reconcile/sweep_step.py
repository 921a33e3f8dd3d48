"""The plan's walk over a sweep's trials: up to maxParallel at once, a failed one not ending the others, and the
job's phase from all of them.

Each trial is a stage (tasks/trials.py), followed exactly as a single stage is (follow.py: its MPIJob, restarts,
Kueue, GPU time, templates, policies), so a failed, restarted or queued trial behaves as one stage would. What
differs is the order: a single job's stages run one after the other, a sweep's trials side by side, a new one
created while fewer than maxParallel are unfinished, in trial order. The sweep succeeds when every trial has ended
and at least minSucceeded succeeded. Once too many have failed for that to happen, no trial is started any more, and
the sweep fails when the running ones have ended (their GPU time is spent, and their results still count).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import reasons
from .. import status as sm
from ..api import BertTrainingJob
from ..api.stages import Stage
from ..tasks import task_of
from ..tasks.trials import best, hopeless, selected_metric, trials
from .decisions import Action, Context, DeleteMPIJob, Event, Followed, Held
from .follow import follow
from .status_view import (BEST, COMPLETION_TIME, EARLY_STOPPED, FIRST_EPOCH, GPU_HOURS, METRICS, PERCENT, PHASE,
                          RESULTS, STAGE_MPIJOB, STAGE_NAME, STOPPED, TRIAL_NAME, TRIALS, StageView)

#: How far along each phase is, for the job's phase while trials run side by side: the most advanced one shows.
_AHEAD = ("Pending", "Suspended", "Queued", "Created", "Restarting", "Running")


@dataclass(frozen=True)
class TrialsWalked:
    entries: list[dict[str, Any]]
    phases: list[sm.StagePhase]
    events: list[Event]
    restarted: bool
    state: sm.JobState


def walk(ctx: Context, job: BertTrainingJob, stages: list[Stage],
         recorded: dict[Any, dict[str, Any]]) -> TrialsWalked | tuple[Action, ...] | Held:
    """Every trial's phase, the MPIJobs to create now (as actions), or why none may be created (Held)."""
    task = task_of(job.spec).settings(job.spec)
    sweep = task.sweep
    first_epochs: dict[int, dict[str, Any]] = {
        t["index"]: t[FIRST_EPOCH] for t in _list(ctx.old.get(TRIALS))
        if isinstance(t, dict) and isinstance(t.get("index"), int) and isinstance(t.get(FIRST_EPOCH), dict)}
    entries: list[dict[str, Any] | None] = []
    phases: list[sm.StagePhase | None] = []
    events: list[Event] = []
    restarted = False
    waiting: list[int] = []
    for stage in stages:
        entry = dict(recorded.get(stage.name) or {STAGE_NAME: stage.name})
        view = StageView(entry)
        if view.phase in sm.TERMINAL_PHASES and view.completion_time:
            entries.append(entry)
            phases.append(sm.StagePhase(view.phase, sm.SUCCEEDED if view.phase == "Succeeded" else sm.FAILED, ""))
            continue
        if not _started(ctx, job, stage, entry):
            waiting.append(stage.index)
            entries.append(entry)
            phases.append(None)
            continue
        why = hopeless(task, first_epochs, stage.index)
        if why is not None:  # earlyStop: its MPIJob deleted first, then it ends here, never restarted
            stopped = _stop(ctx, job, stage, entry, why)
            if not isinstance(stopped, Followed):
                return (stopped,)
            entries.append(stopped.entry)
            phases.append(stopped.phase)
            continue
        followed = follow(ctx, job, stage, entry)
        if isinstance(followed, Held):
            return followed
        if not isinstance(followed, Followed):
            return (followed,)
        entries.append(followed.entry)
        phases.append(followed.phase)
        if followed.event is not None:
            events.append(followed.event)
            restarted = True
    active = sum(1 for phase in phases if phase is not None and phase.phase not in sm.TERMINAL_PHASES)
    failed = sum(1 for phase in phases if phase is not None and phase.phase == "Failed")
    doomed = failed > len(stages) - sweep.min_succeeded
    creates: list[Action] = []
    for index in waiting:
        if active >= sweep.max_parallel or doomed:
            break
        followed = follow(ctx, job, stages[index], entries[index] or {STAGE_NAME: stages[index].name})
        if isinstance(followed, Held):
            return followed
        if not isinstance(followed, Followed):
            creates.append(followed)
            active += 1
            continue
        entries[index], phases[index] = followed.entry, followed.phase  # (failed before it was made: a refusal)
        if followed.phase.phase not in sm.TERMINAL_PHASES:
            active += 1
    if creates:
        return tuple(creates)
    slot = (f"not started: {failed} trials failed, so fewer than minSucceeded ({sweep.min_succeeded}) can succeed"
            if doomed else f"waiting for a trial slot (maxParallel {sweep.max_parallel})")
    never = {index for index, phase in enumerate(phases) if phase is None}
    done = [phase if phase is not None else sm.StagePhase("Pending", reasons.NOT_CREATED, slot) for phase in phases]
    return TrialsWalked([e or {} for e in entries], done, events, restarted, state(done, sweep.min_succeeded, never))


def _stop(ctx: Context, job: BertTrainingJob, stage: Stage, entry: dict[str, Any], why: str) -> Followed | Action:
    """A trial stopped early: its MPIJob deleted (that uid) while it exists, then its stage Failed with the reason."""
    name = stage.mpijob_name(job.metadata.name)
    seen = ctx.observed.get(name)
    if isinstance(seen, dict) and not (seen.get("metadata") or {}).get("deletionTimestamp"):
        return DeleteMPIJob(job.metadata.namespace, name, str((seen.get("metadata") or {}).get("uid") or ""), seen)
    ended = {**entry, STAGE_NAME: stage.name, PHASE: "Failed", EARLY_STOPPED: why,
             COMPLETION_TIME: entry.get(COMPLETION_TIME) or ctx.now}
    return Followed(sm.StagePhase("Failed", reasons.EARLY_STOPPED, why), ended)


def _started(ctx: Context, job: BertTrainingJob, stage: Stage, entry: dict[str, Any]) -> bool:
    """Whether a trial has been made (an MPIJob seen, or one recorded: a restart waiting for its backoff counts)."""
    return ctx.observed.get(stage.mpijob_name(job.metadata.name)) is not None or bool(entry.get(STAGE_MPIJOB))


def state(phases: list[sm.StagePhase], min_succeeded: int, never: set[int] | None = None) -> sm.JobState:
    """The sweep's phase: Succeeded when every trial ended and at least `min_succeeded` succeeded; Failed when too
    many failed for that and none of those made still runs (`never`: the trials not made, which will not be once
    it cannot succeed); else the most advanced phase of the trials still to end, which is the current stage."""
    succeeded = sum(1 for phase in phases if phase.phase == "Succeeded")
    failed = [index for index, phase in enumerate(phases) if phase.phase == "Failed"]
    unfinished = [index for index, phase in enumerate(phases) if phase.phase not in sm.TERMINAL_PHASES]
    total = len(phases)
    if len(failed) > total - min_succeeded and not set(unfinished) - (never or set()):
        first = phases[failed[0]]
        return sm.JobState("Failed", failed[0], reasons.TRIALS_FAILED,
                           f"{len(failed)} of {total} trials failed, so fewer than minSucceeded ({min_succeeded}) can "
                           f"succeed; t{failed[0]}: {first.message or first.reason}")
    if not unfinished:
        return sm.JobState("Succeeded", total - 1, sm.SUCCEEDED, f"{succeeded} of {total} trials succeeded")
    ahead = max(unfinished, key=lambda index: (_AHEAD.index(phases[index].phase) if phases[index].phase in _AHEAD
                                                else 0, -index))
    phase = phases[ahead]
    running = sum(1 for index in unfinished if phases[index].phase == "Running")
    message = f"{running} running, {succeeded} succeeded, {len(failed)} failed of {total} trials"
    return sm.JobState(phase.phase, ahead, phase.reason, f"{message}; t{ahead}: {phase.message}" if phase.message
                       else message)


def is_sweep(job: BertTrainingJob) -> bool:
    """Whether the job is a fine-tuning sweep (its stages are trials)."""
    settings = task_of(job.spec).settings(job.spec)
    return getattr(settings, "sweep", None) is not None


def with_trials(job: BertTrainingJob, entries: list[dict[str, Any]], status: dict[str, Any], phase: str) -> dict[str, Any]:
    """`status` with status.trials (each trial's hyperparameters, phase, MPIJob, GPU-hours, and the dev metrics and
    progress its reports gave: reports.py writes those) and status.results.best (the best succeeded trial by the
    selected metric so far; `final` once the sweep has ended)."""
    task = task_of(job.spec).settings(job.spec)
    found = trials(task)
    old = {t.get(TRIAL_NAME): t for t in _list(status.get(TRIALS)) if isinstance(t, dict)}
    out = []
    for trial, entry in zip(found, entries):
        before, view = old.get(trial.name) or {}, StageView(entry)
        item: dict[str, Any] = {"index": trial.index, TRIAL_NAME: trial.name, "hyperparameters": trial.hyperparameters(),
                                "phase": view.phase or "Pending"}
        for key, value in ((STAGE_MPIJOB, entry.get(STAGE_MPIJOB)), (GPU_HOURS, entry.get(GPU_HOURS)),
                           (STOPPED, entry.get(EARLY_STOPPED)),
                           *((k, before.get(k)) for k in (METRICS, PERCENT, "step", "updatedAt", FIRST_EPOCH))):
            if value is not None:
                item[key] = value
        out.append(item)
    scored = {item["index"]: item[METRICS] for item in out if item["phase"] == "Succeeded"
              and isinstance(item.get(METRICS), dict)}
    chosen = best(task, scored)
    results = {k: v for k, v in _dict(status.get(RESULTS)).items() if k != BEST}
    if chosen is not None:
        out[chosen][BEST] = True
        metric = selected_metric(task)
        results[BEST] = {"trial": found[chosen].name, "index": chosen, "metric": metric,
                         "value": scored[chosen][metric], "hyperparameters": found[chosen].hyperparameters(),
                         "metrics": scored[chosen], "final": phase in sm.TERMINAL_PHASES}
    return {**status, TRIALS: out, RESULTS: results}


def best_stage(status: dict[str, Any]) -> str | None:
    """The stage name of the sweep's best trial once the sweep has ended (its exports are the job's artifacts)."""
    chosen = _dict(_dict(status.get(RESULTS)).get(BEST))
    return chosen.get("trial") if chosen.get("final") is True and isinstance(chosen.get("trial"), str) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}

"""The phase machine: observed MPIJobs -> BertTrainingJob phase, conditions and events.

Pure functions of observed state (no I/O), so every transition is unit-tested
and the reconciler only decides whether to write the result.

| MPIJob condition (latest True)  | stage phase  |
| ------------------------------- | ------------ |
| none yet                        | Pending      |
| (suspended by Kueue)            | Queued       |
| Created                         | Created      |
| Running                         | Running      |
| Restarting                      | Restarting   |
| Suspended                       | Suspended    |
| Succeeded                       | Succeeded    |
| Failed                          | Failed       |

A queued job's stage whose MPIJob Kueue holds suspended is Queued (reconcile/plan.py, with the reason from
its Kueue Workload, bert_operator.kueue); a stage whose MPIJob failed for an infrastructure reason is
Restarting until it is created again (reconcile/failures.py, recovery.py).

The job's phase is its current stage's phase, except that a succeeded
stage with a stage after it is not the end: the job goes on (`Created` for
the next stage) and is `Succeeded` only after the last stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

#: MPIJob condition types in the order that decides a stage's phase (first True wins).
MPIJOB_PHASE_ORDER = ("Failed", "Succeeded", "Suspended", "Restarting", "Running", "Created")
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})

# Condition types and reasons this operator writes on a BertTrainingJob.
VALID = "Valid"
CREATED = "Created"
#: True while Kueue holds the current stage (its MPIJob suspended, not by the user), with Kueue's reason.
QUEUED = "Queued"
RUNNING = "Running"
SUSPENDED = "Suspended"
RESTARTING = "Restarting"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
SPEC_APPLIED = "SpecApplied"
PROGRESS_AVAILABLE = "ProgressAvailable"
#: True while the job's current stage runs; False with the reason while it waits on something outside it.
READY = "Ready"
#: True while the job waits for the jobs it takes inputs from (spec.dataset.fromJob, ...): bert_operator.dependencies.
WAITING = "Waiting"

REASON_INVALID_SPEC = "InvalidSpec"
REASON_VALID_SPEC = "SpecValid"
REASON_IMMUTABLE = "ImmutableFieldChanged"
REASON_APPLIED = "Applied"
REASON_NAME_CONFLICT = "MPIJobNameConflict"
REASON_REFUSED = "MPIJobRefused"
REASON_WAITING_FOR_OLD_MPIJOB = "WaitingForOldMPIJob"
REASON_PODS_PENDING = "PodsPending"
#: A failed stage's MPIJob was deleted and is made again after a backoff.
REASON_RESTART_SCHEDULED = "RestartScheduled"
#: The Warning Event of each restart.
REASON_STAGE_RESTARTED = "StageRestarted"
#: A stage failed for an infrastructure reason once more than runPolicy.maxRestarts allows.
REASON_RESTART_LIMIT = "RestartLimitExceeded"
#: A job that has not started breaks a BertTrainingPolicy of its namespace: failed before anything is created.
REASON_POLICY_VIOLATION = "PolicyViolation"
#: The policies could not be read: the next MPIJob waits for them.
REASON_POLICIES_UNREADABLE = "PoliciesUnreadable"
#: A BertTrainingPolicy that selects the job's namespace is invalid (and was never valid): the next MPIJob waits.
REASON_POLICY_INVALID = "PolicyInvalid"
#: Stage reasons that mean the job waits on something outside it (shown as Ready=False with the reason).
WAITING_REASONS = frozenset({REASON_WAITING_FOR_OLD_MPIJOB, REASON_PODS_PENDING})


@dataclass(frozen=True)
class StagePhase:
    """A stage's phase with the MPI Operator's reason and message behind it."""

    phase: str
    reason: str
    message: str


def mpijob_conditions(mpijob: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list(((mpijob or {}).get("status") or {}).get("conditions") or [])


def stage_phase(mpijob: dict[str, Any] | None) -> StagePhase:
    """Phase of one stage from its MPIJob's conditions, as the MPI Operator writes them."""
    if mpijob is None:
        return StagePhase("Pending", "NotCreated", "MPIJob not created yet")
    true_conditions = {c.get("type"): c for c in mpijob_conditions(mpijob) if c.get("status") == "True"}
    for kind in MPIJOB_PHASE_ORDER:
        if kind in true_conditions:
            condition = true_conditions[kind]
            return StagePhase(kind, condition.get("reason") or kind, condition.get("message") or "")
    return StagePhase("Pending", "WaitingForMPIOperator", "MPIJob created; the MPI Operator has not reported on it yet")


def set_condition(
    conditions: Iterable[dict[str, Any]],
    kind: str,
    status: bool | str,
    reason: str,
    message: str,
    now: str,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Conditions with `kind` set; lastTransitionTime changes only when the status does."""
    value = status if isinstance(status, str) else ("True" if status else "False")
    out: list[dict[str, Any]] = []
    found = False
    for condition in conditions:
        if condition.get("type") != kind:
            out.append(condition)
            continue
        found = True
        changed = condition.get("status") != value
        out.append({
            "type": kind, "status": value, "reason": reason, "message": message,
            "lastTransitionTime": now if changed else condition.get("lastTransitionTime", now),
            "observedGeneration": generation,
        })
    if not found:
        out.append({
            "type": kind, "status": value, "reason": reason, "message": message,
            "lastTransitionTime": now, "observedGeneration": generation,
        })
    return out


def condition_of(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


@dataclass(frozen=True)
class JobState:
    """Where a job stands: its phase, the stage that decides it, and why."""

    phase: str
    stage_index: int
    reason: str
    message: str


def job_state(stage_phases: list[StagePhase]) -> JobState:
    """The job's phase from its stages' phases (stages not reached yet are Pending)."""
    last = len(stage_phases) - 1
    for index, stage in enumerate(stage_phases):
        if stage.phase == "Succeeded" and index < last:
            continue
        return JobState(stage.phase, index, stage.reason, stage.message)
    return JobState("Pending", 0, "NotCreated", "")  # pragma: no cover - a job has at least one stage


#: The condition each phase makes True; the others of this set become False.
PHASE_CONDITIONS = {
    "Queued": QUEUED,
    "Created": CREATED,
    "Running": RUNNING,
    "Restarting": RESTARTING,
    "Suspended": SUSPENDED,
    "Succeeded": SUCCEEDED,
    "Failed": FAILED,
}


def phase_conditions(
    conditions: list[dict[str, Any]], state: JobState, now: str, generation: int | None
) -> list[dict[str, Any]]:
    """Set the lifecycle conditions for `state`.

    Created stays True once a stage was created; Queued, Running, Restarting
    and Suspended reflect the present; Succeeded and Failed are final.
    """
    out = set_condition(conditions, VALID, True, REASON_VALID_SPEC, "spec is valid", now, generation)
    created = state.phase != "Pending" or condition_of({"conditions": conditions}, CREATED) is not None
    if created:
        out = set_condition(out, CREATED, True, "MPIJobCreated", "MPIJob created", now, generation)
    for phase, kind in PHASE_CONDITIONS.items():
        if kind == CREATED:
            continue
        active = state.phase == phase
        existing = condition_of({"conditions": out}, kind)
        if active:
            out = set_condition(out, kind, True, state.reason, state.message, now, generation)
        elif existing is not None and existing.get("status") == "True":
            out = set_condition(out, kind, False, f"Not{kind}", f"job is {state.phase}", now, generation)
    return _ready(out, state, now, generation)


def _ready(conditions: list[dict[str, Any]], state: JobState, now: str, generation: int | None) -> list[dict[str, Any]]:
    """Ready: True while running, False with the reason while waiting on something outside the job, and
    False with the phase once it is neither (only after it was first set, so a new job's list stays short)."""
    if state.phase == "Running":
        return set_condition(conditions, READY, True, "Running", "the current stage is running", now, generation)
    if state.reason in WAITING_REASONS or state.phase == "Queued":
        return set_condition(conditions, READY, False, state.reason, state.message, now, generation)
    if condition_of({"conditions": conditions}, READY) is not None:
        return set_condition(conditions, READY, False, state.phase, f"job is {state.phase}", now, generation)
    return conditions


def event_for_transition(old_phase: str | None, new_phase: str, stage: str, message: str,
                         reason: str = "") -> tuple[str, str, str] | None:
    """(type, reason, message) of the Event a phase change deserves, or None when nothing changed; a Warning for a
    failure, a restart and a preemption (queued again after Kueue evicted the stage)."""
    if old_phase == new_phase:
        return None
    warning = new_phase in ("Failed", "Restarting") or (new_phase == "Queued" and reason == "Evicted")
    kind = "Warning" if warning else "Normal"
    text = f"{stage}: {old_phase or 'New'} -> {new_phase}" + (f": {message}" if message else "")
    return kind, new_phase, text

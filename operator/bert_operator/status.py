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

A queued job's stage whose MPIJob Kueue holds suspended is Queued (reconcile/kueue_step.py, with the reason from
its Kueue Workload, bert_operator.kueue); a stage whose MPIJob failed for an infrastructure reason is
Restarting until it is created again (reconcile/failures.py, recovery.py).

The job's phase is its current stage's phase, except that a succeeded
stage with a stage after it is not the end: the job goes on (`Created` for
the next stage) and is `Succeeded` only after the last stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from . import reasons

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

#: Stage reasons that mean the job waits on something outside it (shown as Ready=False with the reason).
WAITING_REASONS = frozenset({reasons.WAITING_FOR_OLD_MPIJOB, reasons.PODS_PENDING})

# Bounds on what a message can carry. Much of it comes from what a tenant wrote (field errors quote keys and values),
# and the API server refuses a request body over 3 MiB (413) and an object over etcd's 1.5 MiB: a job whose status
# cannot be written shows no phase at all. The bounds keep a whole status a few tens of KiB at most.
#: A condition message, in UTF-8 bytes (metav1.Condition allows 32768; this is what `kubectl describe` can show).
MAX_MESSAGE_BYTES = 4096
#: An Event message, in UTF-8 bytes (what client-go's recorder and events.k8s.io/v1 allow).
MAX_EVENT_BYTES = 1024
#: Field errors quoted in one message; the rest are counted.
MAX_ERRORS = 10
#: One quoted field error, in UTF-8 bytes.
MAX_ERROR_BYTES = 512


def bounded(text: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """`text` cut to at most `limit` UTF-8 bytes on a character boundary, ending in '...' when it was cut."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= limit:
        return text
    return data[:max(limit - 3, 0)].decode("utf-8", errors="ignore") + "..."


def errors_message(errors: Sequence[Any], prefix: str = "") -> str:
    """The first MAX_ERRORS field errors ('path: message; ...'), each bounded, and how many more there are: what a
    condition and an Event say of an invalid spec, however many errors it has."""
    shown = "; ".join(bounded(str(error) if not hasattr(error, "path") else f"{error.path}: {error.message}",
                              MAX_ERROR_BYTES) for error in errors[:MAX_ERRORS])
    more = len(errors) - MAX_ERRORS
    return prefix + shown + (f" (and {more} more error{'s' if more != 1 else ''})" if more > 0 else "")


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
        return StagePhase("Pending", reasons.NOT_CREATED, "MPIJob not created yet")
    true_conditions = {c.get("type"): c for c in mpijob_conditions(mpijob) if c.get("status") == "True"}
    for kind in MPIJOB_PHASE_ORDER:
        if kind in true_conditions:
            condition = true_conditions[kind]
            return StagePhase(kind, condition.get("reason") or kind, condition.get("message") or "")
    return StagePhase("Pending", reasons.WAITING_FOR_MPI_OPERATOR, "MPIJob created; the MPI Operator has not reported on it yet")


def set_condition(
    conditions: Iterable[dict[str, Any]],
    kind: str,
    status: bool | str,
    reason: str,
    message: str,
    now: str,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Conditions with `kind` set; lastTransitionTime changes only when the status does. The message is bounded
    (MAX_MESSAGE_BYTES) here, the one place every condition passes."""
    value = status if isinstance(status, str) else ("True" if status else "False")
    message = bounded(message)
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
    return JobState("Pending", 0, reasons.NOT_CREATED, "")  # pragma: no cover - a job has at least one stage


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
    out = set_condition(conditions, VALID, True, reasons.VALID_SPEC, "spec is valid", now, generation)
    created = state.phase != "Pending" or condition_of({"conditions": conditions}, CREATED) is not None
    if created:
        out = set_condition(out, CREATED, True, reasons.MPIJOB_CREATED, "MPIJob created", now, generation)
    for phase, kind in PHASE_CONDITIONS.items():
        if kind == CREATED:
            continue
        active = state.phase == phase
        existing = condition_of({"conditions": out}, kind)
        if active:
            out = set_condition(out, kind, True, state.reason, state.message, now, generation)
        elif existing is not None and (existing.get("status") == "True" or existing.get("message") != f"job is {state.phase}"):
            # (a False one too: its message names the phase, which must be the job's phase now, not the one it left)
            out = set_condition(out, kind, False, reasons.negated(kind), f"job is {state.phase}", now, generation)
    return _ready(out, state, now, generation)


def ended_conditions(conditions: list[dict[str, Any]], reason: str, message: str, now: str,
                     generation: int | None) -> list[dict[str, Any]]:
    """The conditions of a job that fails without a stage failing (an invalid spec, a policy, a dependency): Failed,
    Ready=False with the same reason (the REASON column of `kubectl get btj`), and no other lifecycle condition
    left True (a running job whose accepted spec no longer passes the rules was Running until now)."""
    out = set_condition(conditions, FAILED, True, reason, message, now, generation)
    for kind in PHASE_CONDITIONS.values():
        existing = condition_of({"conditions": out}, kind)
        if kind not in (FAILED, CREATED) and existing is not None and existing.get("status") == "True":
            out = set_condition(out, kind, False, reasons.negated(kind), "job is Failed", now, generation)
    return set_condition(out, READY, False, reason, message, now, generation)


def _ready(conditions: list[dict[str, Any]], state: JobState, now: str, generation: int | None) -> list[dict[str, Any]]:
    """Ready: True while running, False with the reason while waiting on something outside the job or once it
    failed (the REASON column says why), and False with the phase once it is none of these (only after it was first
    set, so a new job's list stays short)."""
    if state.phase == "Running":
        return set_condition(conditions, READY, True, reasons.RUNNING, "the current stage is running", now, generation)
    if state.reason in WAITING_REASONS or state.phase in ("Queued", "Failed"):
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

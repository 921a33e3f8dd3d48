"""Every reason the operator writes on a condition or an Event: one registry, one home.

A reason is API: users alert on it, `kubectl get btj` shows it, and docs/operations.md tells what to do about each.
Reasons used to be defined in five modules and as inline literals, so the docs' table could only be kept by hand.
Here each reason is defined once, with where it appears; the modules that write them import the names from here,
and tests/operator/test_reasons.py checks both directions: no reason is written as a literal outside this module,
and docs/operations.md lists every reason here and none that is not.

Reasons that are not ours are not listed: the MPI Operator's (on `Running`, `Restarting`, and a failed MPIJob's
on `Failed`), a phase name used as a reason (`Ready=False Pending`, and a phase change's Event: `Created`,
`Running`, `Failed`, ...), and a condition's own negation (:func:`negated`). A stage's failure reason
(`TrainerError`, ...) is said by the `Failed` phase change's Event, not as an Event reason of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Reason:
    """Where one reason appears: the condition types of a BertTrainingJob (`policy Valid`: a BertTrainingPolicy's)
    it is written on, and the type of the Event the operator posts with it, if any."""

    name: str
    conditions: tuple[str, ...] = ()
    event: str | None = None


#: Every reason below, by name (filled by _reason).
ALL: dict[str, Reason] = {}


def _reason(name: str, conditions: tuple[str, ...] = (), event: str | None = None) -> str:
    """Register a reason and give back its name: the constants are plain strings, as conditions and Events hold."""
    ALL[name] = Reason(name, conditions, event)
    return name


_FAILED = ("Failed", "Ready")  # a failed job's reason is on Failed, and on Ready=False alike

# ---------------------------------------------------------------- the spec
INVALID_SPEC: Final = _reason("InvalidSpec", ("Valid", *_FAILED), "Warning")
VALID_SPEC: Final = _reason("SpecValid", ("Valid",))
IMMUTABLE: Final = _reason("ImmutableFieldChanged", ("SpecApplied",), "Warning")
APPLIED: Final = _reason("Applied", ("SpecApplied",))

# ---------------------------------------------------------------- MPIJobs and their pods
MPIJOB_CREATED: Final = _reason("MPIJobCreated", ("Created",))
NAME_CONFLICT: Final = _reason("MPIJobNameConflict", _FAILED)
REFUSED: Final = _reason("MPIJobRefused", _FAILED)
WAITING_FOR_OLD_MPIJOB: Final = _reason("WaitingForOldMPIJob", ("Ready",))
PODS_PENDING: Final = _reason("PodsPending", ("Ready",))
#: A stage whose MPIJob is not made yet, or made and not yet reported on by the MPI Operator: a stage's reason
#: inside the plan only (the job is Pending, which has no condition), never written.
NOT_CREATED: Final = _reason("NotCreated")
WAITING_FOR_MPI_OPERATOR: Final = _reason("WaitingForMPIOperator")
RUNNING: Final = _reason("Running", ("Ready",))

# ---------------------------------------------------------------- restarts (reconcile/recovery.py)
#: A failed stage's MPIJob was deleted and is made again after a backoff.
RESTART_SCHEDULED: Final = _reason("RestartScheduled", ("Restarting",))
#: The Warning Event of each restart.
STAGE_RESTARTED: Final = _reason("StageRestarted", (), "Warning")
#: A stage failed for an infrastructure reason once more than runPolicy.maxRestarts allows.
RESTART_LIMIT: Final = _reason("RestartLimitExceeded", _FAILED)

# ---------------------------------------------------------------- the trainer's exit (reconcile/failures.py)
INVALID_INPUT: Final = _reason("InvalidInput", _FAILED)
TRAINER_ERROR: Final = _reason("TrainerError", _FAILED)
#: Local mode only: Ctrl-C (the stage checkpointed).
INTERRUPTED: Final = _reason("Interrupted", _FAILED)

# ---------------------------------------------------------------- policies (policy.py, policy_cache.py)
#: A job that has not started breaks a BertTrainingPolicy of its namespace: failed before anything is created.
POLICY_VIOLATION: Final = _reason("PolicyViolation", _FAILED, "Warning")
#: The policies could not be read: the next MPIJob waits for them.
POLICIES_UNREADABLE: Final = _reason("PoliciesUnreadable", ("Ready",), "Warning")
#: A BertTrainingPolicy that selects the job's namespace is invalid (and was never valid): the next MPIJob waits.
POLICY_INVALID: Final = _reason("PolicyInvalid", ("Ready",), "Warning")
#: A sweep's trial stopped early (sweep.earlyStop): a trial's reason inside the plan only, said in status.trials[].stopped.
EARLY_STOPPED: Final = _reason("EarlyStopped")
#: Too many of a sweep's trials failed for minSucceeded of them to succeed (reconcile/sweep_step.py).
TRIALS_FAILED: Final = _reason("TrialsFailed", _FAILED)
#: A stage's MPIJob with the platform's job templates breaks their checks (templates/checks.py): failed, nothing made.
TEMPLATE_INVALID: Final = _reason("TemplateInvalid", _FAILED)
#: A job template the job gets is not in the operator's namespace, or its ConfigMap cannot be read: the next MPIJob
#: waits (a job never runs without a template a policy forces).
TEMPLATE_UNAVAILABLE: Final = _reason("TemplateUnavailable", ("Ready",), "Warning")
#: On a BertTrainingPolicy's own Valid condition.
POLICY_VALID: Final = _reason("PolicyValid", ("policy Valid",))
INVALID_POLICY: Final = _reason("InvalidPolicy", ("policy Valid",))
POLICY_CONFLICT: Final = _reason("PolicyConflict", ("policy Valid",))

# ---------------------------------------------------------------- dependencies (dependencies.py)
DEPENDENCY_NOT_READY: Final = _reason("DependencyNotReady", ("Waiting", "Ready"), "Normal")
DEPENDENCIES_READY: Final = _reason("DependenciesReady", ("Waiting",))
DEPENDENCY_FAILED: Final = _reason("DependencyFailed", _FAILED, "Warning")
DEPENDENCY_INVALID: Final = _reason("DependencyInvalid", _FAILED, "Warning")
DEPENDENCY_CYCLE: Final = _reason("DependencyCycle", _FAILED, "Warning")

# ---------------------------------------------------------------- Kueue (kueue.py): Queued, and Ready=False while queued
WAITING_FOR_WORKLOAD: Final = _reason("WaitingForWorkload", ("Queued", "Ready"))
WAITING_FOR_QUOTA: Final = _reason("WaitingForQuota", ("Queued", "Ready"))
INADMISSIBLE: Final = _reason("Inadmissible", ("Queued", "Ready"))
WAITING_FOR_ADMISSION_CHECKS: Final = _reason("WaitingForAdmissionChecks", ("Queued", "Ready"))
ADMITTED: Final = _reason("Admitted", ("Queued", "Ready"))
EVICTED: Final = _reason("Evicted", ("Queued", "Ready"))
#: The Workload API is not served: nothing will ever admit the stage (its MPIJob stays suspended).
KUEUE_NOT_INSTALLED: Final = _reason("KueueNotInstalled", ("Queued", "Ready"))

# ---------------------------------------------------------------- progress (progress.py, reports.py)
REPORTED: Final = _reason("Reported", ("ProgressAvailable",))
NO_REPORT: Final = _reason("NoReport", ("ProgressAvailable",))
STALE: Final = _reason("Stale", ("ProgressAvailable",))

# ---------------------------------------------------------------- serving (reconcile/serve_step.py): Events only
#: The job's InferenceService was made (spec.serve, once the job succeeded), changed to a new spec.serve, or deleted
#: (spec.serve removed).
INFERENCE_SERVICE_CREATED: Final = _reason("InferenceServiceCreated", (), "Normal")
INFERENCE_SERVICE_UPDATED: Final = _reason("InferenceServiceUpdated", (), "Normal")
INFERENCE_SERVICE_DELETED: Final = _reason("InferenceServiceDeleted", (), "Normal")
#: Its Ready condition became True, or stopped being True.
SERVING_READY: Final = _reason("ServingReady", (), "Normal")
SERVING_NOT_READY: Final = _reason("ServingNotReady", (), "Warning")
#: It could not be made or changed: a policy's serving limits, the API server's refusal, KServe not installed, or an
#: InferenceService of the job's name that is not the job's.
SERVING_REFUSED: Final = _reason("ServingRefused", (), "Warning")

# ---------------------------------------------------------------- a sweep's cleanup (reconcile/cleanup_step.py): Events
#: Its Job was made (the sweep succeeded, keepTrialCheckpoints: false), completed, or failed or could not be made.
TRIAL_CLEANUP_STARTED: Final = _reason("TrialCleanupStarted", (), "Normal")
TRIAL_CHECKPOINTS_REMOVED: Final = _reason("TrialCheckpointsRemoved", (), "Normal")
TRIAL_CLEANUP_FAILED: Final = _reason("TrialCleanupFailed", (), "Warning")


def negated(condition: str) -> str:
    """The reason of a lifecycle condition that no longer holds (`Running=False NotRunning: job is Succeeded`)."""
    return f"Not{condition}"


__all__ = ["ALL", "Reason", "negated", *(name for name, value in dict(globals()).items()
                                         if isinstance(value, str) and value in ALL)]

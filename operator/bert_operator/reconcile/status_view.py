"""The job's status and its stage entries as the plan reads them: typed access over the status as stored.

Why views over the stored dict and not ``BertTrainingJobStatus.model_validate`` (api/status.py): a plan must write
back every byte of what it does not change, and the models would not give it back: they drop fields they do not
know (an older or a newer operator's), fill defaults (``stages: []`` where there was none), turn an absent field into
None, and refuse a status someone edited by hand, which the plan must survive. So the plan reads through these views,
whose keys are the models' own aliases (one spelling of each), and the status is written in one place, plan.py's
assembly, starting from the old status so that whatever it does not touch stays as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..api.status import ACCEPTED_SPEC, BertTrainingJobStatus, StageStatus, TrialStatus, wire_key

_JOB = BertTrainingJobStatus
PHASE = wire_key(_JOB, "phase")
CURRENT_STAGE = wire_key(_JOB, "current_stage")
STAGES = wire_key(_JOB, "stages")
CONDITIONS = wire_key(_JOB, "conditions")
START_TIME = wire_key(_JOB, "start_time")
COMPLETION_TIME = wire_key(_JOB, "completion_time")
OBSERVED_GENERATION = wire_key(_JOB, "observed_generation")
PROGRESS = wire_key(_JOB, "progress")
POLICY = wire_key(_JOB, "policy")
RESOLVED = wire_key(_JOB, "resolved")
DEPENDENCIES = wire_key(_JOB, "dependencies")
RESULTS = wire_key(_JOB, "results")
TRIALS = wire_key(_JOB, "trials")
TRIAL_NAME = wire_key(TrialStatus, "name")
METRICS = wire_key(TrialStatus, "metrics")
PERCENT = wire_key(TrialStatus, "percent")
#: status.results.best (a sweep's best trial), and the flag on that trial's entry.
BEST = wire_key(TrialStatus, "best")
GPU_HOURS = wire_key(StageStatus, "gpu_hours")
EARLY_STOPPED = wire_key(StageStatus, "early_stopped")
FIRST_EPOCH = wire_key(TrialStatus, "first_epoch")
STOPPED = wire_key(TrialStatus, "stopped")
TRIAL_CHECKPOINTS = wire_key(TrialStatus, "checkpoints")
TRIAL_CLEANUP = wire_key(_JOB, "trial_cleanup")

STAGE_NAME = wire_key(StageStatus, "name")
STAGE_MPIJOB = wire_key(StageStatus, "mpi_job")
RESTARTS = wire_key(StageStatus, "restarts")
QUEUE_NAME = wire_key(StageStatus, "queue_name")
STAGE_TEMPLATES = wire_key(StageStatus, "templates")
LAST_RESTART_REASON = wire_key(StageStatus, "last_restart_reason")
LAST_RESTART_TIME = wire_key(StageStatus, "last_restart_time")
RESTARTED_MPIJOB_UID = wire_key(StageStatus, "restarted_mpi_job_uid")

__all__ = ["ACCEPTED_SPEC", "StageView", "StatusView"]


def _of(value: Any, kind: type, default: Any) -> Any:
    """`value` where it is a `kind`, else `default`: a field of the wrong kind (a hand-edited status) reads as missing."""
    return value if isinstance(value, kind) else default


@dataclass(frozen=True)
class StatusView:
    """A job's status as stored, read by field. Each property answers what the plan asks of it, tolerating a field
    that is missing, null or of the wrong kind (read as missing)."""

    raw: Mapping[str, Any]

    @property
    def accepted_spec(self) -> Any:
        """The spec the job started with (a dict as written); None (or empty) before its first MPIJob was made."""
        return _of(self.raw.get(ACCEPTED_SPEC), dict, None)

    @property
    def started(self) -> bool:
        """Whether the job started: an MPIJob of its spec was made, so the spec is fixed (runPolicy.suspend aside)."""
        return bool(_of(self.raw.get(ACCEPTED_SPEC), dict, None))

    @property
    def phase(self) -> str | None:
        return _of(self.raw.get(PHASE), str, None)

    @property
    def current_stage(self) -> str | None:
        return _of(self.raw.get(CURRENT_STAGE), str, None)

    @property
    def conditions(self) -> list[dict[str, Any]]:
        return [c for c in _of(self.raw.get(CONDITIONS), list, []) if isinstance(c, dict)]

    @property
    def stages(self) -> list[dict[str, Any]]:
        return [s for s in _of(self.raw.get(STAGES), list, []) if isinstance(s, dict)]

    @property
    def resolved(self) -> Any:
        """Where the job's MPIJobs read and write, fixed when the first was made (None before)."""
        return _of(self.raw.get(RESOLVED), dict, None)

    @property
    def recorded_output(self) -> dict[str, Any] | None:
        """status.resolved.output, where it is a location with a URI."""
        output = (self.resolved or {}).get("output")
        return output if isinstance(output, dict) and output.get("uri") else None

    @property
    def dependencies(self) -> list[dict[str, Any]]:
        return list(_of(self.raw.get(DEPENDENCIES), list, []))

    @property
    def policy(self) -> Any:
        return self.raw.get(POLICY)

    @property
    def results(self) -> dict[str, Any]:
        return _of(self.raw.get(RESULTS), dict, {})


@dataclass(frozen=True)
class StageView:
    """One entry of status.stages as stored, read by field."""

    raw: Mapping[str, Any]

    @property
    def name(self) -> Any:
        return self.raw.get(STAGE_NAME)

    @property
    def phase(self) -> str | None:
        return _of(self.raw.get(PHASE), str, None)

    @property
    def restarts(self) -> int:
        restarts = self.raw.get(RESTARTS)
        return restarts if isinstance(restarts, int) and not isinstance(restarts, bool) and restarts > 0 else 0

    @property
    def restarted_mpijob_uid(self) -> str | None:
        return _of(self.raw.get(RESTARTED_MPIJOB_UID), str, None)

    @property
    def completion_time(self) -> str | None:
        return _of(self.raw.get(COMPLETION_TIME), str, None)

"""GPU time a job's stages held, for a service that charges its tenants: pure functions over a stage's status entry.

What is counted: for each *attempt* of a stage (its MPIJob, and each MPIJob a restart made again), the GPUs the
MPIJob asks for (replicas x ``nvidia.com/gpu`` limits over its replica specs, read from the MPIJob itself, so a
policy's forced resources count as they ran) times the seconds from the moment the attempt was seen Running to its
end. An attempt ends when its MPIJob succeeds or fails (its completion time, else the time of that condition), when a
restart deletes it, or when it is suspended or Kueue takes it back (it holds no pods then); a resumed attempt counts
again from its next Running. Time before Running (queued, pods pending, images pulling) is not counted: the MPI
Operator reports no moment at which the GPUs were bound, and a job whose pods cannot be scheduled holds nothing.

The bookkeeping lives in the stage's entry, so it survives operator restarts and is written only when a stage
changes phase (never on a timer):

- ``runningSince``: when the open attempt was first seen Running (the Running condition's transition time);
- ``gpus``: what the open (or last) attempt's MPIJob holds;
- ``runningSeconds`` / ``gpuHours``: the closed attempts' totals.
"""

from __future__ import annotations

from typing import Any, Iterable

from bert_common.contract import parse_utc
from ..status import mpijob_conditions

#: The extended resource counted. The renderer asks for exactly this one (render/values.py).
GPU_RESOURCE = "nvidia.com/gpu"
#: gpuHours is rounded to this many decimals: 0.001 h is 3.6 GPU-seconds, below the timestamps' 1 s resolution x 8.
DECIMALS = 3


def mpijob_gpus(mpijob: dict[str, Any]) -> int:
    """GPUs an MPIJob's pods ask for in all: replicas x the GPU limits of each replica spec's containers."""
    total = 0
    for replica in ((mpijob.get("spec") or {}).get("mpiReplicaSpecs") or {}).values():
        pod_spec = ((replica or {}).get("template") or {}).get("spec") or {}
        per_pod = 0
        for container in pod_spec.get("containers") or []:
            limit = ((container.get("resources") or {}).get("limits") or {}).get(GPU_RESOURCE)
            try:
                per_pod += int(str(limit)) if limit is not None else 0
            except ValueError:  # a quantity like "1k" is not a GPU count any scheduler accepts
                continue
        total += int(replica.get("replicas") or 1) * per_pod
    return total


def _condition_time(mpijob: dict[str, Any], kind: str, status: str = "True") -> str | None:
    for condition in mpijob_conditions(mpijob):
        if condition.get("type") == kind and condition.get("status") == status:
            return condition.get("lastTransitionTime") or None
    return None


def open_attempt(entry: dict[str, Any], mpijob: dict[str, Any], now: str) -> dict[str, Any]:
    """The entry of a stage whose MPIJob is Running: its attempt opened (once) at the Running transition."""
    if entry.get("runningSince"):
        return entry
    return {**entry, "runningSince": _condition_time(mpijob, "Running") or now, "gpus": mpijob_gpus(mpijob)}


def attempt_end(mpijob: dict[str, Any], now: str) -> str:
    """When an MPIJob that stopped running stopped: its completion time, else its terminal condition's time, else now."""
    status = mpijob.get("status") or {}
    return (status.get("completionTime") or _condition_time(mpijob, "Succeeded") or _condition_time(mpijob, "Failed")
            or now)


def _seconds(start: str, end: str) -> int:
    try:
        return max(0, int((parse_utc(end) - parse_utc(start)).total_seconds()))
    except ValueError:  # a hand-edited status with a broken time: count nothing rather than fail the job
        return 0


def close_attempt(entry: dict[str, Any], mpijob: dict[str, Any] | None, end: str) -> dict[str, Any]:
    """The entry with its open attempt's GPU time added to the totals. An entry with no open attempt is unchanged,
    except a stage's first attempt that ended without being seen Running (the operator was down, or the MPIJob ran
    between two of its watch events): given its MPIJob, that one counts from the MPIJob's startTime. Later attempts
    missed that way count nothing: the entry cannot tell them from one a suspend already closed."""
    start = entry.get("runningSince")
    gpus = entry.get("gpus")
    if not start and mpijob is not None and entry.get("runningSeconds") is None:
        start = (mpijob.get("status") or {}).get("startTime")
        gpus = mpijob_gpus(mpijob)
    if not start:
        return entry
    seconds = _seconds(start, end)
    closed = {key: value for key, value in entry.items() if key != "runningSince"}
    closed["gpus"] = int(gpus or 0)
    closed["runningSeconds"] = int(entry.get("runningSeconds") or 0) + seconds
    closed["gpuHours"] = round(float(entry.get("gpuHours") or 0) + closed["gpus"] * seconds / 3600, DECIMALS)
    return closed


def job_gpu_hours(entries: Iterable[dict[str, Any]]) -> float | None:
    """The job's GPU-hours over its stages' closed attempts; None while no attempt has closed."""
    hours = [float(entry["gpuHours"]) for entry in entries if entry.get("gpuHours") is not None]
    return round(sum(hours), DECIMALS) if hours else None


def track(entry: dict[str, Any], mpijob: dict[str, Any], phase: str, now: str) -> dict[str, Any]:
    """The plan's usage step: the stage entry with its GPU time kept. An attempt opens when its MPIJob is seen
    Running, and closes when it succeeds (once: before its completionTime is set) or is suspended or taken back by
    Kueue."""
    if phase == "Running":
        return open_attempt(entry, mpijob, now)
    if phase == "Succeeded" and not entry.get("completionTime"):
        return close_attempt(entry, mpijob, attempt_end(mpijob, now))
    if phase in ("Suspended", "Queued") and entry.get("runningSince"):
        return close_attempt(entry, None, now)
    return entry

"""Trainer reports (progress.json, results.json) folded into a BertTrainingJob status.

Pure, so the operator's progress endpoint and `bertjob run --local` (which
reads the same files the trainer writes) produce the same status fields.
"""

from __future__ import annotations

from typing import Any

from . import status as sm
from .api import BertTrainingJob
from .tasks import stages_of, task_of
from .contract import PROGRESS_FIELD_NAMES, REPORT_PROGRESS, REPORT_RESULTS, REPORT_STAGE


def merge_report(job: BertTrainingJob, status: dict[str, Any], report: dict[str, Any], now: str) -> dict[str, Any]:
    """The status fields a trainer report changes (pure).

    Raises ValueError with a message naming the field when the report is malformed.
    """
    names = [stage.name for stage in stages_of(job.spec)]
    stage = report.get(REPORT_STAGE)
    if stage not in names:
        raise ValueError(f"stage: must be one of {names}, got {stage!r}")
    generation = (status.get("observedGeneration"))
    patch: dict[str, Any] = {}
    if REPORT_PROGRESS in report:
        raw = report[REPORT_PROGRESS]
        if not isinstance(raw, dict):
            raise ValueError("progress: must be an object")
        step, total = raw.get("step"), raw.get("totalSteps")
        if not isinstance(step, int) or not isinstance(total, int) or total < 1 or not 0 <= step <= total:
            raise ValueError(f"progress.step/totalSteps: need integers with 0 <= step <= totalSteps >= 1, got {step!r}/{total!r}")
        weights = task_of(job.spec).stage_weights(job.spec)
        index = names.index(stage)
        done = sum(weights[:index]) + weights[index] * step / total
        percent = min(100, int(done * 100))
        progress = {"stage": stage, **{k: raw[k] for k in PROGRESS_FIELD_NAMES if k in raw}, "percent": percent,
                    "display": f"{percent}% {stage}"}
        progress.setdefault("updatedAt", now)
        patch["progress"] = progress
    if REPORT_RESULTS in report:
        if not isinstance(report[REPORT_RESULTS], dict):
            raise ValueError("results: must be an object")
        patch["results"] = {**(status.get("results") or {}), **report[REPORT_RESULTS], "stage": stage}
    if not patch:
        raise ValueError("report: needs progress or results")
    patch["conditions"] = sm.set_condition(
        status.get("conditions") or [], sm.PROGRESS_AVAILABLE, True, "Reported", f"trainer reported on {stage}", now, generation
    )
    return patch

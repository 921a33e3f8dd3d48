"""Trainer reports (progress.json, results.json) folded into a BertTrainingJob status.

Pure, so the operator's progress endpoint and `bertjob run --local` (which
reads the same files the trainer writes) produce the same status fields.

A report is written by a pod the tenant controls, so it is checked like any other tenant input before it reaches
the status: every progress field has the contract's type, results are plain JSON of bounded size and depth, a
number the API server cannot store (NaN, Infinity, an integer beyond what JSON readers hold) becomes null rather
than costing the stage its one results report (the API server's JSON decoder refuses a bare NaN, and a trainer
evaluates 0 batches to NaN by design), and the fields the operator owns (`results.gpuHours`, the billing figure,
`results.artifacts`, `results.stage`) are never taken from a report.
"""

from __future__ import annotations

import json
import math
from typing import Any, TypeGuard

from . import status as sm
from .api import BertTrainingJob
from .tasks import stages_of, task_of
from bert_common.contract import PROGRESS_FIELDS, REPORT_PROGRESS, REPORT_RESULTS, REPORT_STAGE, parse_utc
from . import reasons

#: status.results keys the operator writes itself (reconcile/plan.py): a report's values for them are dropped.
OPERATOR_RESULTS = frozenset({"stage", "gpuHours", "artifacts", "best"})
#: Bounds on what one report may put into status (the whole status must stay far below the API server's 1.5 MB
#: object limit, and `describe` prints every results entry).
MAX_RESULTS_BYTES = 16 * 1024
MAX_RESULTS_ENTRIES = 200
MAX_DEPTH = 4
MAX_STRING = 2048
MAX_KEY = 128
#: The largest step count a report may give: far beyond any run, and exact in every JSON reader (2^53).
MAX_STEPS = 2**53
#: An ETA beyond this (about three years) is no estimate: it is shown and exported as unknown (null).
MAX_ETA_SECONDS = 1e8
#: The range of a Kubernetes integer: a larger one is stored as a float (as Go decodes it), or null.
INT64 = 2**63 - 1


class StaleReport(ValueError):
    """A report older than what the status already shows for its stage's attempt (a replay, or out of order)."""


def finite(value: Any) -> Any:
    """A JSON number the API server stores as sent: NaN and ±Infinity become None, an integer beyond int64 a float
    (as Go's decoder makes it), None where even a float cannot hold it. Anything else is returned as is."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int) and abs(value) > INT64:
        try:
            return float(value)
        except OverflowError:
            return None
    return value


def _plain_json(value: Any, path: str, depth: int, budget: list[int]) -> Any:
    """`value` as bounded plain JSON with non-finite numbers nulled; ValueError naming the first field that is not."""
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError(f"results: at most {MAX_RESULTS_ENTRIES} values in all")
    if value is None or isinstance(value, (bool, int, float)):
        return finite(value)
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise ValueError(f"{path}: at most {MAX_STRING} characters, got {len(value)}")
        return value
    if depth >= MAX_DEPTH and isinstance(value, (dict, list)):
        raise ValueError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, list):
        return [_plain_json(item, f"{path}[{index}]", depth + 1, budget) for index, item in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY:
                raise ValueError(f"{path}: keys must be 1 to {MAX_KEY} characters")
            out[key] = _plain_json(item, f"{path}.{key}", depth + 1, budget)
        return out
    raise ValueError(f"{path}: must be JSON (object, array, string, number, boolean or null), got {type(value).__name__}")


def checked_results(raw: Any) -> dict[str, Any]:
    """A results report as status may hold it: an object of bounded plain JSON, without the operator's fields."""
    if not isinstance(raw, dict):
        raise ValueError("results: must be an object")
    results = _plain_json({k: v for k, v in raw.items() if k not in OPERATOR_RESULTS}, "results", 0,
                          [MAX_RESULTS_ENTRIES + 1])
    if len(json.dumps(results)) > MAX_RESULTS_BYTES:
        raise ValueError(f"results: at most {MAX_RESULTS_BYTES // 1024} KiB")
    return results


def _integer(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def checked_progress(raw: Any) -> dict[str, Any]:
    """The contract's progress fields of a report, each of its type (a non-finite figure, or an ETA beyond
    MAX_ETA_SECONDS or below 0, becomes null); ValueError naming the first field that is not."""
    if not isinstance(raw, dict):
        raise ValueError("progress: must be an object")
    step, total = raw.get("step"), raw.get("totalSteps")
    if not (_integer(step) and _integer(total)) or not 1 <= total <= MAX_STEPS or not 0 <= step <= total:
        raise ValueError(f"progress.step/totalSteps: need integers with 0 <= step <= totalSteps, 1 <= totalSteps <= 2^53, "
                         f"got {_shown(step)}/{_shown(total)}")
    out: dict[str, Any] = {}
    for field in PROGRESS_FIELDS:
        if field.name not in raw:
            continue
        value = raw[field.name]
        if field.kind is float:
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"progress.{field.name}: must be a number or null, got {type(value).__name__}")
            value = finite(value)
            if field.name == "etaSeconds" and value is not None and not 0 <= value <= MAX_ETA_SECONDS:
                value = None
        elif field.kind is str:
            if not isinstance(value, str) or len(value) > 64:
                raise ValueError(f"progress.{field.name}: must be an RFC 3339 time, got {_shown(value)}")
            try:
                parse_utc(value)
            except ValueError:
                raise ValueError(f"progress.{field.name}: must be an RFC 3339 time, got {_shown(value)}") from None
        out[field.name] = value
    return out


def _shown(value: Any) -> str:
    """A reported value in a message: its repr, cut short (a report is tenant input)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _attempt_start(status: dict[str, Any], stage: str) -> str | None:
    """When the stage's current attempt began as far as status says (its last restart, or when it was last seen
    Running): progress written before it belongs to an earlier attempt."""
    entry = next((s for s in status.get("stages") or [] if isinstance(s, dict) and s.get("name") == stage), {})
    stamps = [s for s in (entry.get("lastRestartTime"), entry.get("runningSince")) if isinstance(s, str)]
    return max(stamps, key=lambda s: _time(s) or 0.0) if stamps else None


def _time(stamp: Any) -> float | None:
    try:
        return parse_utc(stamp).timestamp() if isinstance(stamp, str) else None
    except ValueError:
        return None


def _check_not_behind(status: dict[str, Any], names: list[str], stage: str, progress: dict[str, Any]) -> None:
    """Refuse progress that moves its stage's attempt backwards: a lower step, or an older updatedAt, than the
    status shows for the same stage, unless that was written before the stage's current attempt began (a restart
    resumes from its last checkpoint, so its step may well be lower), or progress of an earlier stage than the
    status shows."""
    previous = status.get("progress")
    if not isinstance(previous, dict) or previous.get("stage") not in names:
        return
    if names.index(previous["stage"]) > names.index(stage):
        raise StaleReport(f"stage: progress of {stage} after {previous['stage']} reported (a late or replayed report)")
    if previous["stage"] != stage:
        return
    written, began = _time(previous.get("updatedAt")), _time(_attempt_start(status, stage))
    if written is not None and began is not None and written < began:
        return
    old_step = previous.get("step")
    if isinstance(old_step, int) and progress["step"] < old_step:
        raise StaleReport(f"progress.step: {progress['step']} is behind step {old_step} this attempt of {stage} "
                          "already reported (a replayed or out-of-order report)")
    sent = _time(progress.get("updatedAt"))
    if written is not None and sent is not None and sent < written:
        raise StaleReport(f"progress.updatedAt: {progress['updatedAt']} is older than the {previous['updatedAt']} "
                          f"already reported for {stage} (a replayed or out-of-order report)")


def merge_report(job: BertTrainingJob, status: dict[str, Any], report: dict[str, Any], now: str) -> dict[str, Any]:
    """The status fields a trainer report changes (pure).

    Raises ValueError with a message naming the field when the report is malformed, StaleReport (a ValueError)
    when its progress is behind what the status shows for the same attempt.
    """
    names = [stage.name for stage in stages_of(job.spec)]
    stage = report.get(REPORT_STAGE)
    if not isinstance(stage, str) or stage not in names:
        raise ValueError(f"stage: must be one of {_names_shown(names)}, got {_shown(stage)}")
    generation = (status.get("observedGeneration"))
    settings = task_of(job.spec).settings(job.spec)
    if getattr(settings, "sweep", None) is not None:
        trial = _trial_report(settings, status, names, stage, report, now)
        trial["conditions"] = sm.set_condition(status.get("conditions") or [], sm.PROGRESS_AVAILABLE, True,
                                               reasons.REPORTED, f"trainer reported on {stage}", now, generation)
        return trial
    patch: dict[str, Any] = {}
    if REPORT_PROGRESS in report:
        fields = checked_progress(report[REPORT_PROGRESS])
        fields.setdefault("updatedAt", now)
        _check_not_behind(status, names, stage, fields)
        step, total = fields["step"], fields["totalSteps"]
        weights = task_of(job.spec).stage_weights(job.spec)
        index = names.index(stage)
        done = sum(weights[:index]) + weights[index] * step / total
        percent = min(100, int(done * 100))
        patch["progress"] = {"stage": stage, **fields, "percent": percent, "display": f"{percent}% {stage}"}
    if REPORT_RESULTS in report:
        old = status.get("results") or {}
        # The bounds hold for what status will hold, not for one report: new keys report after report would grow
        # status.results to the API server's limit, and then no status write (the phase included) would pass.
        results = checked_results({**old, **checked_results(report[REPORT_RESULTS])})
        patch["results"] = {**old, **results, "stage": stage}
    if not patch:
        raise ValueError("report: needs progress or results")
    patch["conditions"] = sm.set_condition(
        status.get("conditions") or [], sm.PROGRESS_AVAILABLE, True, reasons.REPORTED, f"trainer reported on {stage}", now,
        generation,
    )
    return patch


def _names_shown(names: list[str]) -> str:
    """The stages a report may name, shortened for a sweep's many trials."""
    return str(names) if len(names) <= 4 else f"{names[0]}..{names[-1]}"


def _trial_report(task: Any, status: dict[str, Any], names: list[str], stage: str, report: dict[str, Any],
                  now: str) -> dict[str, Any]:
    """A sweep trial's report: its progress and its dev metrics go on its own status.trials entry (trials run side
    by side, so one trial's report never moves another's), and the job's progress is the trials' mean."""
    trials_now = [dict(t) if isinstance(t, dict) else {} for t in status.get("trials") or []]
    by_name = {t.get("name"): t for t in trials_now}
    entry = by_name.get(stage)
    if entry is None:  # (reported before the operator listed its trials: not expected, but never lost)
        entry = {"index": names.index(stage), "name": stage}
        trials_now.append(entry)
    patch: dict[str, Any] = {}
    if REPORT_PROGRESS in report:
        fields = checked_progress(report[REPORT_PROGRESS])
        fields.setdefault("updatedAt", now)
        previous = {"stage": stage, "step": entry.get("step"), "updatedAt": entry.get("updatedAt")}
        _check_not_behind({"progress": previous, "stages": status.get("stages") or []}, [stage], stage, fields)
        entry.update(percent=min(100, int(100 * fields["step"] / fields["totalSteps"])), step=fields["step"],
                     updatedAt=fields["updatedAt"])
        every: dict[Any, dict[str, Any]] = {**{name: {} for name in names}, **by_name}
        shares = [100 if t.get("phase") in ("Succeeded", "Failed") else _percent(t.get("percent")) for t in every.values()]
        percent = min(100, int(sum(shares) / len(names)))
        ended = sum(1 for t in by_name.values() if t.get("phase") in ("Succeeded", "Failed"))
        patch["progress"] = {"stage": stage, **fields, "percent": percent,
                             "display": f"{percent}% {ended}/{len(names)} trials"}
    if REPORT_RESULTS in report:
        from .tasks.trials import dev_metrics  # noqa: PLC0415 - tasks imports reports' neighbours; kept local

        checked = checked_results(report[REPORT_RESULTS])
        metrics = {name: finite(value) for name, value in dev_metrics(task, checked).items()}
        if metrics:  # (a first-epoch report has none yet)
            entry["metrics"] = metrics
        first = checked.get("firstEpoch")
        if isinstance(first, dict):  # sweep.earlyStop's early look: numbers only
            entry["firstEpoch"] = {key: finite(value) for key, value in first.items()
                                   if isinstance(value, (int, float)) and not isinstance(value, bool)}
    if not patch and REPORT_RESULTS not in report:
        raise ValueError("report: needs progress or results")
    patch["trials"] = trials_now
    return patch


def _percent(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100 else 0

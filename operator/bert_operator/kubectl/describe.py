"""`kubectl bertjob describe`: one job as a person reads it, from its status and its Events.

Everything shown is what the operator recorded (status.py's models, the Events it posts); nothing is inferred.
A Secret appears by name only, as the status holds it (resolved locations' credentialsSecret): no value is ever
read. Events are matched on the involved object's kind, name and uid, because a field selector is a request (and
an earlier job of the same name has other Events). The status is read as untrusted (untrusted.py: a value of the
wrong type is shown `<invalid>` or skipped, never a traceback), and every value is escaped (terminal.py).
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from ..api.presets import KIND
from bert_common.contract import format_utc, parse_utc
from ..terminal import one_line
from ..untrusted import INVALID, is_invalid, mapping, records, text, texts, whole
from .client import Target, api_errors, job_path
from .tables import age, render_rows


def job_events(target: Target, job: dict[str, Any]) -> list[dict[str, Any]]:
    """core/v1 Events whose involvedObject is `job`, oldest first."""
    meta = job.get("metadata") or {}
    namespace, name, uid = meta.get("namespace") or target.namespace or "default", meta.get("name"), meta.get("uid")
    with api_errors(target, f"listing the Events of {job_path(namespace, str(name))}"):
        answer = target.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.kind={KIND},involvedObject.name={name}", _preload_content=False)
        items = json.loads(answer.data).get("items") or []

    def about_job(event: Any) -> bool:
        if not isinstance(event, dict):
            return False
        involved = mapping(event.get("involvedObject"))
        return (involved.get("kind") == KIND and involved.get("name") == name
                and (not uid or not involved.get("uid") or involved.get("uid") == uid))

    return sorted(filter(about_job, items), key=event_time)


def event_time(event: dict[str, Any]) -> str:
    """When an Event last happened, in the order kubectl sorts them (RFC 3339 strings of one zone sort as times)."""
    stamps = (event.get("lastTimestamp"), event.get("eventTime"), event.get("firstTimestamp"),
              mapping(event.get("metadata")).get("creationTimestamp"))
    return _utc(next((stamp for stamp in stamps if isinstance(stamp, str) and stamp), ""))


def _utc(stamp: str) -> str:
    try:
        return format_utc(parse_utc(stamp)) if stamp else ""
    except (ValueError, OverflowError):  # a time no calendar holds (year 0 after the zone shift): shown as written
        return stamp


def _field(label: str, value: Any, indent: str = "") -> str:
    """`Label:   value`, aligned as kubectl describe aligns them; nothing for a value the status does not have."""
    if value is None or value == "":
        return ""
    return f"{indent}{one_line(label) + ':':<18}{one_line(value)}\n"


def _stages(status: dict[str, Any]) -> str:
    if is_invalid(status.get("stages"), list):
        return f"Stages:             {INVALID}\n"
    stages = records(status.get("stages"))
    if not stages:
        return "Stages:             <none>\n"
    rows = [["NAME", "MPIJOB", "PHASE", "STARTED", "COMPLETED", "RESTARTS", "GPUS", "GPU-HOURS"]]
    rows += [[_cell(s.get("name")), _cell(s.get("mpiJob")), _cell(s.get("phase")), _cell(s.get("startTime")),
              _cell(s.get("completionTime")), _cell(s.get("restarts") or 0), _cell(s.get("gpus")),
              _gpu_hours(s)] for s in stages]
    out = "Stages:\n" + render_rows(rows, "  ")
    for s in stages:
        if s.get("lastRestartReason"):
            when = f" at {_cell(s['lastRestartTime'])}" if s.get("lastRestartTime") else ""
            line = f"{_cell(s.get('name'))}: last restart{when}: {_cell(s['lastRestartReason'])}"
            out += f"  {one_line(line)}\n"
    return out


#: The dev metrics a trial's row shows, in this order, where any trial has them.
TRIAL_METRICS = ("mcc", "accuracy", "f1", "exact_match")


def _trials(status: dict[str, Any]) -> str:
    """A sweep's trials as a table, the best so far marked (status.trials; status.results.best says by what)."""
    if is_invalid(status.get("trials"), list):
        return f"Trials:             {INVALID}\n"
    trials = records(status.get("trials"))
    if not trials:
        return ""
    metrics = [m for m in TRIAL_METRICS if any(mapping(t.get("metrics")).get(m) is not None for t in trials)]
    rows = [["", "TRIAL", "LEARNING-RATE", "SEED", "EPOCHS", "BATCH", "PHASE", *(m.upper() for m in metrics),
             "GPU-HOURS", "MPIJOB"]]
    for trial in trials:
        given = mapping(trial.get("hyperparameters"))
        scores = mapping(trial.get("metrics"))
        rows.append(["*" if trial.get("best") is True else "", _cell(trial.get("name")), _cell(given.get("learningRate")),
                     _cell(given.get("seed")), _cell(given.get("epochs")), _cell(given.get("batchSizePerGpu")),
                     _cell(trial.get("phase")), *(_metric(scores.get(m)) for m in metrics),
                     _cell(trial.get("gpuHours")), _cell(trial.get("mpiJob"))])
    best = mapping(mapping(status.get("results")).get("best"))
    chosen = ""
    if best:
        final = "" if best.get("final") is True else " so far"
        chosen = one_line(f"  best{final}: {_cell(best.get('trial'))} by {_cell(best.get('metric'))} "
                          f"{_metric(best.get('value'))}") + "\n"
    cleanup = mapping(status.get("trialCleanup"))
    if cleanup.get("phase"):  # (keepTrialCheckpoints: false) the tenant's text, one line, escaped
        made = f" ({_cell(cleanup.get('job'))})" if cleanup.get("job") else ""
        chosen += one_line(f"  checkpoints: {_cell(cleanup.get('phase'))}{made}: {_cell(cleanup.get('message'))}") + "\n"
    return "Trials:\n" + render_rows(rows, "  ") + chosen


def _metric(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


def _gpu_hours(stage: dict[str, Any]) -> str:
    """The stage's GPU-hours (reconcile/usage.py: its ended attempts), marked `+` while an attempt still runs, since
    the status counts that one only when it ends."""
    hours = stage.get("gpuHours")
    running = bool(stage.get("runningSince"))
    if hours is None:
        return "running" if running else ""
    return f"{_cell(hours)}{' +running' if running else ''}"


def _conditions(status: dict[str, Any]) -> str:
    if is_invalid(status.get("conditions"), list):
        return f"Conditions:         {INVALID}\n"
    conditions = records(status.get("conditions"))
    if not conditions:
        return "Conditions:         <none>\n"
    rows = [["TYPE", "STATUS", "REASON", "LAST TRANSITION", "MESSAGE"]]
    rows += [[_cell(c.get("type")), _cell(c.get("status")), _cell(c.get("reason")), _cell(c.get("lastTransitionTime")),
              _cell(c.get("message"))] for c in conditions]
    return "Conditions:\n" + render_rows(rows, "  ")


def _results(status: dict[str, Any]) -> str:
    if is_invalid(status.get("results"), dict):
        return f"Results:            {INVALID}\nArtifacts:          {INVALID}\n"
    results = dict(mapping(status.get("results")))
    raw_artifacts = results.pop("artifacts", None)
    artifacts = records(raw_artifacts)
    out = ""
    if results:
        out += "Results:\n" + "".join(_field(str(key), _scalar(value), "  ") for key, value in results.items())
    else:
        out += "Results:            <none>\n"
    if is_invalid(raw_artifacts, list):
        out += f"Artifacts:          {INVALID}\n"
    elif artifacts:
        rows = [["STAGE", "FORMAT", "URI"]] + [[_cell(a.get("stage")), _cell(a.get("format")), _cell(a.get("uri"))]
                                              for a in artifacts]
        out += "Artifacts:\n" + render_rows(rows, "  ")
    else:
        out += "Artifacts:          <none>\n"
    return out


def _scalar(value: Any) -> str:
    """A value as describe shows it: a float short, an object or list as compact JSON (escaped when printed)."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        try:
            return json.dumps(value, separators=(", ", ": "))
        except (RecursionError, ValueError):  # nested past any sense, or a cycle: nothing to show
            return INVALID
    return str(value)


def _cell(value: Any) -> str:
    """A table cell or field from the status: nothing for absent, the value as text otherwise."""
    return "" if value is None else _scalar(value)


def _store(store: Any) -> str | None:
    if store is None or store == {}:
        return None
    if not isinstance(store, dict):
        return INVALID
    extras = [f"{key} {_cell(store[key])}" for key in ("endpoint", "region") if store.get(key)]
    if store.get("credentialsSecret"):
        extras.append(f"credentials from Secret {_cell(store['credentialsSecret'])}")
    return f"{_cell(store.get('uri'))}" + (f" ({', '.join(extras)})" if extras else "")


def _resolved(status: dict[str, Any]) -> str:
    if is_invalid(status.get("resolved"), dict):
        return f"Resolved:           {INVALID}\n"
    resolved = mapping(status.get("resolved"))
    if not resolved:
        return "Resolved:           <none>\n"
    out = "Resolved:\n"
    for label, value in (("Dataset", _store(resolved.get("dataset"))), ("Output", _store(resolved.get("output"))),
                         ("Vocab", _cell(resolved.get("vocab"))),
                         ("Init checkpoint", _cell(resolved.get("initCheckpoint")))):
        if value:
            out += _field(label, value, "  ")
    if is_invalid(resolved.get("dataPaths"), list):
        out += _field("Data paths", INVALID, "  ")
    elif resolved.get("dataPaths"):
        out += "  Data paths:\n" + "".join(f"    {one_line(_cell(path))}\n" for path in resolved["dataPaths"])
    return out


def _dependencies(status: dict[str, Any]) -> str:
    if is_invalid(status.get("dependencies"), list):
        return f"Dependencies:       {INVALID}\n"
    dependencies = records(status.get("dependencies"))
    if not dependencies:
        return "Dependencies:       <none>\n"
    rows = [["JOB", "PHASE", "FIELDS"]] + [[_cell(d.get("name")), _cell(d.get("phase")), ", ".join(texts(d.get("fields")))]
                                          for d in dependencies]
    return "Dependencies:\n" + render_rows(rows, "  ")


def _policy(status: dict[str, Any]) -> str:
    if is_invalid(status.get("policy"), dict):
        return f"Policy:             {INVALID}\n"
    policy = mapping(status.get("policy"))
    if not policy.get("policies") and not policy.get("applied"):
        return "Policy:             <none>\n"
    out = "Policy:\n" + _field("Policies", ", ".join(texts(policy.get("policies"))) or "<none>", "  ")
    applied = records(policy.get("applied"))
    if applied:
        rows = [["FIELD", "VALUE", "HOW", "POLICY"]] + [[_cell(a.get("path")), _cell(a.get("value")), _cell(a.get("how")),
                                                       _cell(a.get("policy"))] for a in applied]
        out += render_rows(rows, "  ")
    return out


def _serving(status: dict[str, Any]) -> str:
    """The job's InferenceService (spec.serve): where it answers, whether it is ready and why not, and its conditions."""
    if is_invalid(status.get("serving"), dict):
        return f"Serving:            {INVALID}\n"
    serving = mapping(status.get("serving"))
    if not serving:
        return "Serving:            <none>\n"
    ready = serving.get("ready")
    out = "Serving:\n" + _field("InferenceService", _cell(serving.get("inferenceService")), "  ")
    out += _field("URL", _cell(serving.get("url")) or "<none>", "  ")
    out += _field("Ready", "True" if ready is True else "False", "  ")
    out += _field("Reason", _cell(serving.get("reason")), "  ")
    model = " ".join(part for part in (_cell(serving.get("model")), _cell(serving.get("modelVersion"))) if part)
    out += _field("Model", model, "  ")
    out += _field("Storage", _cell(serving.get("storageUri")), "  ")
    conditions = records(serving.get("conditions"))
    if conditions:
        rows = [["TYPE", "STATUS", "REASON", "MESSAGE"]]
        rows += [[_cell(c.get("type")), _cell(c.get("status")), _cell(c.get("reason")), _cell(c.get("message"))]
                 for c in conditions]
        out += render_rows(rows, "  ")
    return out


def _events(events: list[dict[str, Any]], now: datetime.datetime) -> str:
    if not events:
        return "Events:             <none>\n"
    rows = [["TYPE", "REASON", "AGE", "FROM", "MESSAGE"]]
    for event in records(events):
        source = mapping(event.get("source")).get("component") or event.get("reportingComponent")
        count = whole(event.get("count")) or 1
        when = age(event_time(event), now) + (f" (x{count})" if count > 1 else "")
        rows.append([_cell(event.get("type")), _cell(event.get("reason")), when, _cell(source),
                     " ".join(_cell(event.get("message")).split())])
    return "Events:\n" + render_rows(rows, "  ")


def describe(job: dict[str, Any], events: list[dict[str, Any]], now: datetime.datetime | None = None) -> str:
    """The text of `describe` for one job and its Events."""
    # The local run's progress line: the same figures, the same words.
    from ..local.display import progress_text  # noqa: PLC0415 - display needs tqdm, the [operator] extra

    now = now or datetime.datetime.now(tz=datetime.timezone.utc)
    meta, status = mapping(job.get("metadata")), mapping(job.get("status"))
    progress = mapping(status.get("progress"))
    created = text(meta.get("creationTimestamp"))
    out = _field("Name", meta.get("name"))
    out += _field("Namespace", meta.get("namespace"))
    out += _field("Created", f"{created} ({age(created, now)} ago)" if created else None)
    phase = INVALID if is_invalid(job.get("status"), dict) else _cell(status.get("phase")) or "<none>"
    out += _field("Phase", phase)
    out += _field("Task", _cell(status.get("task")))
    out += _field("Model", _cell(status.get("model")))
    out += _field("Workers", _cell(status.get("workers")))
    out += _field("GPUs", _cell(status.get("gpus")))
    out += _field("Current stage", _cell(status.get("currentStage")) or "<none>")
    if is_invalid(status.get("progress"), dict):
        out += _field("Progress", INVALID)
    elif progress:
        percent = whole(progress.get("percent"), 0, 100)
        out += _field("Progress", f"{'' if percent is None else f'{percent}% '}{progress_text(progress)}".strip())
        if text(progress.get("updatedAt")):
            out += _field("Reported", f"{progress['updatedAt']} ({age(progress['updatedAt'], now)} ago)")
    out += _field("Started", _cell(status.get("startTime")))
    out += _field("Completed", _cell(status.get("completionTime")))
    for part in (_stages(status), _trials(status), _conditions(status), _results(status), _resolved(status),
                 _dependencies(status), _policy(status), _serving(status), _events(events, now)):
        out += part
    return out

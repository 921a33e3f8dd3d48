"""`kubectl bertjob describe`: one job as a person reads it, from its status and its Events.

Everything shown is what the operator recorded (status.py's models, the Events it posts); nothing is inferred.
A Secret appears by name only, as the status holds it (resolved locations' credentialsSecret): no value is ever
read. Events are matched on the involved object's kind, name and uid, because a field selector is a request (and
an earlier job of the same name has other Events).
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from ..api.presets import KIND
from .client import Target, api_errors, job_path
from .tables import age, render_rows


def job_events(target: Target, job: dict[str, Any]) -> list[dict[str, Any]]:
    """core/v1 Events whose involvedObject is `job`, oldest first."""
    meta = job.get("metadata") or {}
    namespace, name, uid = meta.get("namespace") or target.namespace or "default", meta.get("name"), meta.get("uid")
    with api_errors(target, f"listing the Events of {job_path(namespace, name)}"):
        answer = target.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.kind={KIND},involvedObject.name={name}", _preload_content=False)
        items = json.loads(answer.data).get("items") or []

    def about_job(event: dict[str, Any]) -> bool:
        involved = event.get("involvedObject") or {}
        return (involved.get("kind") == KIND and involved.get("name") == name
                and (not uid or not involved.get("uid") or involved.get("uid") == uid))

    return sorted(filter(about_job, items), key=event_time)


def event_time(event: dict[str, Any]) -> str:
    """When an Event last happened, in the order kubectl sorts them (RFC 3339 strings of one zone sort as times)."""
    stamp = (event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
             or (event.get("metadata") or {}).get("creationTimestamp") or "")
    return _utc(stamp)


def _utc(stamp: str) -> str:
    from ..contract import format_utc, parse_utc

    try:
        return format_utc(parse_utc(stamp)) if stamp else ""
    except ValueError:
        return stamp


def _field(label: str, value: Any, indent: str = "") -> str:
    """`Label:   value`, aligned as kubectl describe aligns them; nothing for a value the status does not have."""
    if value is None or value == "":
        return ""
    return f"{indent}{label + ':':<18}{value}\n"


def _stages(status: dict[str, Any]) -> str:
    stages = status.get("stages") or []
    if not stages:
        return "Stages:             <none>\n"
    rows = [["NAME", "MPIJOB", "PHASE", "STARTED", "COMPLETED", "RESTARTS", "GPUS", "GPU-HOURS"]]
    rows += [[s.get("name", ""), s.get("mpiJob") or "", s.get("phase") or "", s.get("startTime") or "",
              s.get("completionTime") or "", str(s.get("restarts") or 0), _scalar(s.get("gpus")),
              _gpu_hours(s)] for s in stages]
    out = "Stages:\n" + render_rows(rows, "  ")
    for s in stages:
        if s.get("lastRestartReason"):
            when = f" at {s['lastRestartTime']}" if s.get("lastRestartTime") else ""
            out += f"  {s.get('name')}: last restart{when}: {s['lastRestartReason']}\n"
    return out


def _gpu_hours(stage: dict[str, Any]) -> str:
    """The stage's GPU-hours (reconcile/usage.py: its ended attempts), marked `+` while an attempt still runs, since
    the status counts that one only when it ends."""
    hours = stage.get("gpuHours")
    running = bool(stage.get("runningSince"))
    if hours is None:
        return "running" if running else ""
    return f"{_scalar(hours)}{' +running' if running else ''}"


def _conditions(status: dict[str, Any]) -> str:
    conditions = status.get("conditions") or []
    if not conditions:
        return "Conditions:         <none>\n"
    rows = [["TYPE", "STATUS", "REASON", "LAST TRANSITION", "MESSAGE"]]
    rows += [[c.get("type", ""), c.get("status", ""), c.get("reason") or "", c.get("lastTransitionTime") or "",
              c.get("message") or ""] for c in conditions]
    return "Conditions:\n" + render_rows(rows, "  ")


def _results(status: dict[str, Any]) -> str:
    results = dict(status.get("results") or {})
    artifacts = results.pop("artifacts", None) or []
    out = ""
    if results:
        out += "Results:\n" + "".join(_field(str(key), _scalar(value), "  ") for key, value in results.items())
    else:
        out += "Results:            <none>\n"
    if artifacts:
        rows = [["STAGE", "FORMAT", "URI"]] + [[str(a.get("stage", "")), str(a.get("format", "")), str(a.get("uri", ""))]
                                              for a in artifacts if isinstance(a, dict)]
        out += "Artifacts:\n" + render_rows(rows, "  ")
    else:
        out += "Artifacts:          <none>\n"
    return out


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(", ", ": "))
    return str(value)


def _store(store: dict[str, Any] | None) -> str | None:
    if not store:
        return None
    extras = [f"{key} {store[key]}" for key in ("endpoint", "region") if store.get(key)]
    if store.get("credentialsSecret"):
        extras.append(f"credentials from Secret {store['credentialsSecret']}")
    return f"{store.get('uri') or ''}" + (f" ({', '.join(extras)})" if extras else "")


def _resolved(status: dict[str, Any]) -> str:
    resolved = status.get("resolved") or {}
    if not resolved:
        return "Resolved:           <none>\n"
    out = "Resolved:\n"
    for label, value in (("Dataset", _store(resolved.get("dataset"))), ("Output", _store(resolved.get("output"))),
                         ("Vocab", resolved.get("vocab")), ("Init checkpoint", resolved.get("initCheckpoint"))):
        if value:
            out += _field(label, value, "  ")
    if resolved.get("dataPaths"):
        out += "  Data paths:\n" + "".join(f"    {path}\n" for path in resolved["dataPaths"])
    return out


def _dependencies(status: dict[str, Any]) -> str:
    dependencies = status.get("dependencies") or []
    if not dependencies:
        return "Dependencies:       <none>\n"
    rows = [["JOB", "PHASE", "FIELDS"]] + [[d.get("name", ""), d.get("phase") or "", ", ".join(d.get("fields") or [])]
                                          for d in dependencies]
    return "Dependencies:\n" + render_rows(rows, "  ")


def _policy(status: dict[str, Any]) -> str:
    policy = status.get("policy") or {}
    if not policy.get("policies") and not policy.get("applied"):
        return "Policy:             <none>\n"
    out = "Policy:\n" + _field("Policies", ", ".join(policy.get("policies") or []) or "<none>", "  ")
    applied = policy.get("applied") or []
    if applied:
        rows = [["FIELD", "VALUE", "HOW", "POLICY"]] + [[a.get("path", ""), a.get("value", ""), a.get("how", ""),
                                                       a.get("policy", "")] for a in applied]
        out += render_rows(rows, "  ")
    return out


def _events(events: list[dict[str, Any]], now: datetime.datetime) -> str:
    if not events:
        return "Events:             <none>\n"
    rows = [["TYPE", "REASON", "AGE", "FROM", "MESSAGE"]]
    for event in events:
        source = (event.get("source") or {}).get("component") or event.get("reportingComponent") or ""
        count = event.get("count") or 1
        when = age(event_time(event), now) + (f" (x{count})" if count > 1 else "")
        rows.append([event.get("type") or "", event.get("reason") or "", when, source,
                     " ".join(str(event.get("message") or "").split())])
    return "Events:\n" + render_rows(rows, "  ")


def describe(job: dict[str, Any], events: list[dict[str, Any]], now: datetime.datetime | None = None) -> str:
    """The text of `describe` for one job and its Events."""
    from ..local.display import progress_text  # the local run's progress line: the same figures, the same words

    now = now or datetime.datetime.now(tz=datetime.timezone.utc)
    meta, status = job.get("metadata") or {}, job.get("status") or {}
    progress = status.get("progress") or {}
    out = _field("Name", meta.get("name"))
    out += _field("Namespace", meta.get("namespace"))
    out += _field("Created", f"{meta.get('creationTimestamp')} ({age(meta.get('creationTimestamp'), now)} ago)"
                  if meta.get("creationTimestamp") else None)
    out += _field("Phase", status.get("phase") or "<none>")
    out += _field("Task", status.get("task"))
    out += _field("Model", status.get("model"))
    out += _field("Workers", status.get("workers"))
    out += _field("GPUs", status.get("gpus"))
    out += _field("Current stage", status.get("currentStage") or "<none>")
    if progress:
        percent = f"{progress['percent']}% " if isinstance(progress.get("percent"), int) else ""
        out += _field("Progress", f"{percent}{progress_text(progress)}".strip())
        if progress.get("updatedAt"):
            out += _field("Reported", f"{progress['updatedAt']} ({age(progress['updatedAt'], now)} ago)")
    out += _field("Started", status.get("startTime"))
    out += _field("Completed", status.get("completionTime"))
    for part in (_stages(status), _conditions(status), _results(status), _resolved(status), _dependencies(status),
                 _policy(status), _events(events, now)):
        out += part
    return out

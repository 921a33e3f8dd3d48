"""What `bertjob run --local` prints when it ends: one row per job, as `kubectl get` would show it.

The row holds what a user looks for after a run: did it succeed (and why not), how long it took, the figure that
says how good the result is, and where the outputs and exported models are. The whole status stays in each job's
status.json and behind `-o yaml` / `-o json`. The figures come from the trainer's results.json as the status
holds it (status.results), read typed (untrusted.py): a report cannot break the table, and every cell is escaped
by the table's renderer (kubectl/tables.render_rows).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Sequence

from bert_common.contract import parse_utc
from .. import tasks as registry
from ..kubectl.tables import age, render_rows
from ..untrusted import mapping, records, text

if TYPE_CHECKING:
    from .runner import LocalRun

HEADERS = ["NAME", "PHASE", "REASON", "DURATION", "METRIC", "OUTPUTS", "EXPORTS"]


def metric(status: dict[str, Any]) -> str:
    """The main dev figure of a job's results, as its task (status.task) reads them (`OperatorTask.summary`);
    nothing before there are results, or for a task this operator does not know."""
    status = mapping(status)
    name = text(status.get("task"))
    task = next((task for task in registry.TASKS if task.name == name), None)
    return task.summary(mapping(status.get("results"))) if task else ""


def duration(status: dict[str, Any]) -> str:
    """startTime to completionTime, as kubectl writes a duration (45s, 3m20s); nothing while either is missing."""
    status = mapping(status)
    start, end = text(status.get("startTime")), text(status.get("completionTime"))
    if not start or not end:
        return ""
    try:
        return age(start, parse_utc(end))
    except ValueError:
        return ""


def reason(status: dict[str, Any]) -> str:
    """Why a job did not succeed: its Failed condition's reason (MPIJobFailed, DependencyFailed, Interrupted)."""
    failed = next((c for c in records(mapping(status).get("conditions"))
                   if c.get("type") == "Failed" and c.get("status") == "True"), {})
    return text(failed.get("reason")) or ""


def short_path(location: str) -> str:
    """A local folder relative to the working directory when it is below it; anything else as it is."""
    if "://" in location or not os.path.isabs(location):
        return location
    relative = os.path.relpath(location)
    return location if relative.startswith("..") else relative


def exports(location: str, uris: Sequence[str]) -> str:
    """The exported models' locations, each relative to the outputs' when below it (`phase1/export/hf`)."""
    base = location.rstrip("/") + "/"
    return ", ".join(uri[len(base):] if uri.startswith(base) else short_path(uri) for uri in uris)


def summary_table(runs: Sequence[LocalRun]) -> str:
    """The jobs of a run, one row each, as a kubectl table."""
    table = [HEADERS] + [[run.name, run.phase, reason(run.status), duration(run.status), metric(run.status),
                          short_path(run.outputs), exports(run.outputs, run.exports)] for run in runs]
    return render_rows(table)


__all__ = ["duration", "exports", "metric", "reason", "summary_table"]

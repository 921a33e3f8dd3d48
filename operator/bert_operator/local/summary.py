"""What `bertjob run --local` prints when it ends: one row per job, as `kubectl get` would show it.

The row holds what a user looks for after a run: did it succeed (and why not), how long it took, the figure that
says how good the result is, and where the outputs and exported models are. The whole status stays in each job's
status.json and behind `-o yaml` / `-o json`. The figures come from the trainer's results.json as the status
holds it (status.results), read typed (untrusted.py): a report cannot break the table, and every cell is escaped
by the table's renderer (kubectl/tables.render_rows).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Sequence

from bert_common.contract import parse_utc
from ..kubectl.tables import age, render_rows
from ..untrusted import mapping, number, records, text, whole

if TYPE_CHECKING:
    from .runner import LocalRun

HEADERS = ["NAME", "PHASE", "REASON", "DURATION", "METRIC", "OUTPUTS", "EXPORTS"]


def _figure(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def _pretrain(results: dict[str, Any]) -> str:
    """The last phase's final training loss and masked-LM accuracy (on the eval set when it ran)."""
    parts = []
    loss = number(results.get("finalLoss"))
    if loss is not None:
        parts.append(f"loss {_figure(loss)}")
    for key, label in (("evalMlmAccuracy", "eval MLM acc"), ("mlmAccuracy", "MLM acc")):
        accuracy = number(results.get(key))
        if accuracy is not None:
            parts.append(f"{label} {_figure(accuracy)}")
            break
    return ", ".join(parts)


def _squad(results: dict[str, Any]) -> str:
    """F1 and exact match on the predict file, in percent (v1.1: exact_match; v2.0: exact)."""
    scores = mapping(results.get("predict"))
    f1 = number(scores.get("f1"))
    exact = number(scores.get("exact_match"))
    exact = number(scores.get("exact")) if exact is None else exact
    parts = ([f"F1 {_figure(f1, 2)}"] if f1 is not None else []) + ([f"EM {_figure(exact, 2)}"] if exact is not None else [])
    return ", ".join(parts)


#: GLUE's dev metrics, in the order a task's results hold them (CoLA: mcc; MRPC: accuracy, f1; MNLI: accuracy).
_GLUE = (("mcc", "MCC"), ("accuracy", "acc"), ("f1", "F1"))


def _glue(results: dict[str, Any]) -> str:
    """Each dev split's metrics: `CoLA dev MCC 0.412`, `MNLI dev_matched acc 0.841, dev_mismatched acc 0.836`."""
    splits = []
    for split, scores in results.items():
        if not isinstance(scores, dict):
            continue
        figures = [f"{label} {_figure(value)}" for key, label in _GLUE if (value := number(scores.get(key))) is not None]
        if figures:
            splits.append(f"{split} {' '.join(figures)}")
    task = text(results.get("task"))
    return f"{task} {', '.join(splits)}" if splits and task else ", ".join(splits)


def _prepare(results: dict[str, Any]) -> str:
    """What the data job made: instances (training examples) and shards, of its last stage."""
    instances, shards = whole(results.get("instances")), whole(results.get("shards"))
    parts = ([f"{instances} instances"] if instances is not None else []) + ([f"{shards} shards"] if shards is not None else [])
    return ", ".join(parts)


METRICS: dict[str, Callable[[dict[str, Any]], str]] = {
    "pretrain": _pretrain, "squad": _squad, "glue": _glue, "prepareData": _prepare}


def metric(status: dict[str, Any]) -> str:
    """The main dev figure of a job's results, per its task (status.task); nothing before there are results."""
    status = mapping(status)
    shown = METRICS.get(text(status.get("task")) or "")
    return shown(mapping(status.get("results"))) if shown else ""


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

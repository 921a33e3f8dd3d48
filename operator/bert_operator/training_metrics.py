"""The training gauges of each job (loss, throughput, progress, ETA), kept in step with its status.progress.

They follow the job's status, not the reports themselves: status.progress is the one record a report is merged
into, so the gauges show what `kubectl get btj` shows, and they follow every status this process writes (an accepted
report, the phase change that ends the job). After an operator restart they come back from the status a job is first
seen with, so dashboards do not go blank on every rollout.

Cardinality is bounded by the jobs that run: one series set per job that has reported progress and not ended, for
the stage it last reported on. A report for the next stage replaces the old stage's series; a job that Succeeds,
Fails or is deleted loses all of its series.

Thread-safe: the progress endpoint writes statuses from executor threads, the watch handlers and the resync from
kopf's; one lock makes each job's swap of series (remove the old stage's, set the new) atomic.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Callable

from prometheus_client import Gauge

from . import metrics
from .status import TERMINAL_PHASES

#: (namespace, name) of a BertTrainingJob.
JobKey = tuple[str, str]
#: One exported series: (the gauge's field name in Gauges, its label values) -> value.
Series = dict[tuple[str, tuple[str, ...]], float]


@dataclass(frozen=True)
class Gauges:
    """The gauges the figures go to: metrics.py's in the operator, a private registry's in unit tests."""

    loss: Gauge = metrics.TRAINING_LOSS
    sequences_per_second: Gauge = metrics.TRAINING_SEQUENCES_PER_SECOND
    progress_ratio: Gauge = metrics.TRAINING_PROGRESS_RATIO
    eta_seconds: Gauge = metrics.TRAINING_ETA_SECONDS
    job_progress_ratio: Gauge = metrics.TRAINING_JOB_PROGRESS_RATIO


#: status.progress field -> the stage gauge it is exported as, unchanged.
COPIED = (("loss", "loss"), ("sequencesPerSecond", "sequences_per_second"), ("etaSeconds", "eta_seconds"))


def _number(value: Any) -> float | None:
    """A reported figure as a float; None for anything else (a bool is not a figure). NaN passes, though reports
    never bring one: the API server stores no NaN, so bert_operator.reports writes a non-finite figure as null."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def series_of(namespace: str, name: str, status: dict[str, Any]) -> Series:
    """The series a job's status exports (pure): none once the job ended or before it reported progress; else the
    figures its progress holds, labelled with the stage they are for."""
    progress = status.get("progress")
    if status.get("phase") in TERMINAL_PHASES or not isinstance(progress, dict):
        return {}
    stage = progress.get("stage")
    if not isinstance(stage, str) or not stage:
        return {}
    labels = (namespace, name, stage)
    found: Series = {}
    for field, gauge in COPIED:
        value = _number(progress.get(field))
        if value is not None:
            found[(gauge, labels)] = value
    step, total = _number(progress.get("step")), _number(progress.get("totalSteps"))
    if step is not None and total and total > 0 and math.isfinite(step):
        found[("progress_ratio", labels)] = min(1.0, max(0.0, step / total))
    percent = _number(progress.get("percent"))
    if percent is not None:
        found[("job_progress_ratio", (namespace, name))] = min(1.0, max(0.0, percent / 100))
    return found


class TrainingMetrics:
    """Each job's exported training series, set and removed as its status changes."""

    def __init__(self, gauges: Gauges | None = None) -> None:
        self.gauges = gauges or Gauges()
        self._lock = threading.Lock()
        self._shown: dict[JobKey, Series] = {}

    def follow(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Export what the job's latest status says (called with every status this process writes for the job)."""
        with self._lock:
            self._show((namespace, name), series_of(namespace, name, status))

    def restore(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Export a job first seen by this process (after a restart, from the status it is listed with), unless a
        status written since already did: a listed status is never newer than one this process wrote."""
        with self._lock:
            if (namespace, name) not in self._shown:
                self._show((namespace, name), series_of(namespace, name, status))

    def forget(self, namespace: str, name: str) -> None:
        """The job was deleted: remove its series."""
        with self._lock:
            self._show((namespace, name), {})

    def retain(self, known: Callable[[JobKey], bool]) -> None:
        """Remove the series of every job `known` says this process no longer knows (the resync's safety net for a
        status write that raced the job's deletion); checked under the lock, so a job added meanwhile keeps its own."""
        with self._lock:
            for key in [key for key in self._shown if not known(key)]:
                self._show(key, {})

    def jobs(self) -> set[JobKey]:
        """The jobs with series exported now."""
        with self._lock:
            return set(self._shown)

    def _show(self, key: JobKey, wanted: Series) -> None:
        """Make the job's exported series exactly `wanted`: remove the ones it no longer has, set the rest (the
        caller holds the lock)."""
        shown = self._shown.get(key, {})
        if shown == wanted:
            return
        for gauge, labels in shown.keys() - wanted.keys():
            getattr(self.gauges, gauge).remove(*labels)
        for (gauge, labels), value in wanted.items():
            getattr(self.gauges, gauge).labels(*labels).set(value)
        if wanted:
            self._shown[key] = wanted
        else:
            self._shown.pop(key, None)

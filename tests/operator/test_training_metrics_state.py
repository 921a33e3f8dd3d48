"""bert_operator.training_metrics on a private registry: which series a status exports, and how they change."""

from __future__ import annotations

import math
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Gauge

from bert_operator.training_metrics import Gauges, TrainingMetrics, series_of

STAGE = ("namespace", "job", "stage")


def running(stage: str = "phase1", phase: str = "Running", **progress: Any) -> dict[str, Any]:
    figures = {"step": 45, "totalSteps": 90, "loss": 7.25, "sequencesPerSecond": 812.5, "etaSeconds": 12.5, "percent": 45}
    return {"phase": phase, "progress": {"stage": stage, **figures, **progress}}


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def training(registry: CollectorRegistry) -> TrainingMetrics:
    return TrainingMetrics(Gauges(
        loss=Gauge("loss", "", STAGE, registry=registry),
        sequences_per_second=Gauge("sps", "", STAGE, registry=registry),
        progress_ratio=Gauge("ratio", "", STAGE, registry=registry),
        eta_seconds=Gauge("eta", "", STAGE, registry=registry),
        job_progress_ratio=Gauge("job_ratio", "", ("namespace", "job"), registry=registry),
    ))


def exported(registry: CollectorRegistry) -> dict[tuple[str, tuple[str, ...]], float]:
    """Every sample in the registry: (metric, label values) -> value."""
    return {(sample.name, tuple(sample.labels.values())): sample.value
            for family in registry.collect() for sample in family.samples}


def test_a_running_status_exports_each_figure_under_its_stage() -> None:
    labels = ("ns", "bert", "phase1")
    assert series_of("ns", "bert", running()) == {
        ("loss", labels): 7.25, ("sequences_per_second", labels): 812.5, ("eta_seconds", labels): 12.5,
        ("progress_ratio", labels): 0.5, ("job_progress_ratio", ("ns", "bert")): 0.45}


@pytest.mark.parametrize("status", [
    {}, {"phase": "Running"}, {"phase": "Running", "progress": {"step": 1, "totalSteps": 2}},
    running(phase="Succeeded"), running(phase="Failed"),
], ids=["no-status", "no-progress", "no-stage", "succeeded", "failed"])
def test_an_ended_job_or_one_without_progress_exports_nothing(status: dict[str, Any]) -> None:
    assert series_of("ns", "bert", status) == {}


def test_figures_that_are_not_numbers_are_left_out_and_a_nan_loss_is_kept() -> None:
    found = series_of("ns", "bert", running(loss=float("nan"), sequencesPerSecond=True, etaSeconds="soon", totalSteps=0))
    names = {gauge for gauge, _ in found}
    assert names == {"loss", "job_progress_ratio"}
    assert math.isnan(found[("loss", ("ns", "bert", "phase1"))])


def test_the_next_stage_replaces_the_old_stages_series_and_a_missing_figure_drops_its_series(
    training: TrainingMetrics, registry: CollectorRegistry
) -> None:
    training.follow("ns", "bert", running())
    assert exported(registry)[("loss", ("ns", "bert", "phase1"))] == 7.25
    second = running("phase2", step=10, totalSteps=40, percent=92)
    del second["progress"]["etaSeconds"]
    training.follow("ns", "bert", second)
    assert exported(registry) == {
        ("loss", ("ns", "bert", "phase2")): 7.25, ("sps", ("ns", "bert", "phase2")): 812.5,
        ("ratio", ("ns", "bert", "phase2")): 0.25, ("job_ratio", ("ns", "bert")): 0.92}


def test_the_end_of_a_job_or_its_deletion_removes_only_its_series(training: TrainingMetrics, registry: CollectorRegistry) -> None:
    for name in ("a", "b", "c"):
        training.follow("ns", name, running())
    training.follow("ns", "a", running(phase="Succeeded"))
    training.forget("ns", "b")
    assert {labels[1] for _, labels in exported(registry)} == {"c"}
    assert training.jobs() == {("ns", "c")}


def test_a_restore_never_overrides_a_status_written_since_and_never_shows_an_ended_job(
    training: TrainingMetrics, registry: CollectorRegistry
) -> None:
    training.follow("ns", "bert", running("phase2"))
    training.restore("ns", "bert", running("phase1"))  # the listing is older than our own write
    assert {labels[2] for name, labels in exported(registry) if name != "job_ratio"} == {"phase2"}
    training.restore("ns", "done", running(phase="Succeeded"))
    training.restore("ns", "fresh", running())
    assert training.jobs() == {("ns", "bert"), ("ns", "fresh")}


def test_retain_drops_the_jobs_no_longer_known(training: TrainingMetrics, registry: CollectorRegistry) -> None:
    training.follow("ns", "kept", running())
    training.follow("ns", "gone", running())
    training.retain(lambda key: key == ("ns", "kept"))
    assert training.jobs() == {("ns", "kept")}
    assert {labels[1] for _, labels in exported(registry)} == {"kept"}

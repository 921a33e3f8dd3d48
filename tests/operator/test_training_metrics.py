"""Training gauges on the real operator's /metrics: set by accepted progress reports through the real endpoint,
replaced by the next stage's, gone when the job ends or is deleted, back after a restart for running jobs only."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bert_operator.version import package_version
from bert_operator.render.values import DEFAULT_TRAINER_IMAGE
from tests.conftest import free_port
from tests.operator.cluster import EmulatedCluster, OperatorProcess
from tests.operator.test_operator_e2e import NS, SQUAD, TINY, named, post_progress, status, token_reviews  # noqa: F401

EMULATED: dict[str, Any] = {}  # `cluster` (conftest.py): the strict emulator, as test_operator_e2e's

STAGE_GAUGES = {"bertoperator_training_loss": "loss", "bertoperator_training_sequences_per_second": "sequencesPerSecond",
                "bertoperator_training_eta_seconds": "etaSeconds", "bertoperator_training_progress_ratio": None}
FIGURES = {"step": 45, "totalSteps": 90, "loss": 7.25, "sequencesPerSecond": 812.5, "etaSeconds": 12.5}


@pytest.fixture(scope="module")
def operator(emulated: EmulatedCluster) -> Iterator[OperatorProcess]:  # noqa: F811
    port = free_port()
    process = OperatorProcess(emulated, "--metrics-port", str(port))
    process.metrics_port = port  # the same port after a restart: dashboards scrape one address
    yield process.start()
    process.stop()


def samples(operator: OperatorProcess) -> list[tuple[str, dict[str, str], float]]:
    """Every sample the operator process exports now, parsed as Prometheus parses it."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5).read().decode()
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def serving(operator: OperatorProcess) -> bool:
    try:
        return bool(samples(operator))
    except urllib.error.URLError:  # not listening yet
        return False


def training(operator: OperatorProcess, job: str) -> dict[tuple[str, str | None], float]:
    """The training series of one job: (metric, stage label) -> value."""
    return {(name, labels.get("stage")): value for name, labels, value in samples(operator)
            if name.startswith("bertoperator_training_") and labels.get("job") == job and labels["namespace"] == NS}


def reports(operator: OperatorProcess, outcome: str) -> float:
    return sum(value for name, labels, value in samples(operator)
               if name == "bertoperator_progress_reports_total" and labels["outcome"] == outcome)


def jobs_known(operator: OperatorProcess) -> float:
    return sum(value for name, _, value in samples(operator) if name == "bertoperator_jobs")


def running_job(cluster: EmulatedCluster, verdict: dict[str, str], document: dict[str, Any], name: str,
                stage: str) -> None:
    """A job whose first stage runs, with a pod of it whose token the API server confirms for the job's audience."""
    cluster.apply_job(named(document, name), uid=f"uid-{name}")
    cluster.wait(lambda: status(cluster, name).get("phase") == "Pending", what="Pending")
    cluster.set_mpijob_conditions(NS, f"{name}-{stage}", "Created", "Running")
    cluster.wait(lambda: status(cluster, name).get("phase") == "Running", what="Running")
    cluster.run_pod(NS, f"{name}-{stage}-worker-0", name, uid=f"pod-{name}")
    verdict.update(pod=f"{name}-{stage}-worker-0", uid=f"pod-{name}", audience=f"bert-operator/{NS}/{name}")


def expected(stage: str, figures: dict[str, Any], job_ratio: float) -> dict[tuple[str, str | None], float]:
    found: dict[tuple[str, str | None], float] = {
        (metric, stage): figures[field] for metric, field in STAGE_GAUGES.items() if field}
    found[("bertoperator_training_progress_ratio", stage)] = figures["step"] / figures["totalSteps"]
    found[("bertoperator_training_job_progress_ratio", None)] = job_ratio
    return found


def test_reports_set_the_gauges_the_next_stage_replaces_them_and_the_end_removes_them(
    cluster: EmulatedCluster, operator: OperatorProcess, token_reviews: dict[str, str]  # noqa: F811
) -> None:
    running_job(cluster, token_reviews, TINY, "gauges-1", "phase1")
    assert post_progress(operator, "gauges-1", {"stage": "phase1", "progress": FIGURES})[0] == 200
    # Half of phase 1, which is 90% of the job's steps: 45% of the job.
    assert cluster.wait(lambda: training(operator, "gauges-1"), what="gauges") == expected("phase1", FIGURES, 0.45)

    cluster.set_mpijob_conditions(NS, "gauges-1-phase1", "Created", "Running", "Succeeded")
    cluster.wait(lambda: any(m["metadata"]["name"] == "gauges-1-phase2" for m in cluster.mpijobs(NS)), what="phase2")
    cluster.run_pod(NS, "gauges-1-phase2-worker-0", "gauges-1", uid="pod-gauges-1-phase2")  # phase 2 reports from its own pod
    token_reviews.update(pod="gauges-1-phase2-worker-0", uid="pod-gauges-1-phase2")
    second = {"step": 10, "totalSteps": 40, "loss": 2.5, "sequencesPerSecond": 300.0, "etaSeconds": 90.0}
    assert post_progress(operator, "gauges-1", {"stage": "phase2", "progress": second})[0] == 200
    replaced = cluster.wait(lambda: (found := training(operator, "gauges-1")) and ("bertoperator_training_loss", "phase2")
                            in found and found, what="phase2 gauges")
    assert replaced == expected("phase2", second, 0.92)  # phase 1 done (90%) and a quarter of phase 2 (10%)

    cluster.set_mpijob_conditions(NS, "gauges-1-phase2", "Created", "Running", "Succeeded")
    cluster.wait(lambda: status(cluster, "gauges-1").get("phase") == "Succeeded", what="Succeeded")
    cluster.wait(lambda: not training(operator, "gauges-1"), what="no series once Succeeded")


def test_a_forbidden_report_exports_nothing(cluster: EmulatedCluster, operator: OperatorProcess,  # noqa: F811
                                            token_reviews: dict[str, str]) -> None:  # noqa: F811
    running_job(cluster, token_reviews, SQUAD, "gauges-forbidden", "squad")
    token_reviews["pod"] = "another-jobs-worker-0"
    before = reports(operator, "forbidden")
    assert post_progress(operator, "gauges-forbidden", {"stage": "squad", "progress": FIGURES})[0] == 403
    cluster.wait(lambda: reports(operator, "forbidden") == before + 1, what="the refusal counted")
    assert training(operator, "gauges-forbidden") == {}
    assert "progress" not in status(cluster, "gauges-forbidden")


def test_a_deleted_running_job_loses_its_series(cluster: EmulatedCluster, operator: OperatorProcess,  # noqa: F811
                                                token_reviews: dict[str, str]) -> None:  # noqa: F811
    running_job(cluster, token_reviews, SQUAD, "gauges-deleted", "squad")
    assert post_progress(operator, "gauges-deleted", {"stage": "squad", "progress": FIGURES})[0] == 200
    cluster.wait(lambda: training(operator, "gauges-deleted"), what="gauges")
    cluster.custom.delete_namespaced_custom_object("bertoperator.io", "v1alpha1", NS, "berttrainingjobs", "gauges-deleted")
    cluster.wait(lambda: not training(operator, "gauges-deleted"), what="no series once deleted")


def test_after_a_restart_running_jobs_gauges_come_back_from_their_status_and_ended_jobs_stay_gone(
    cluster: EmulatedCluster, operator: OperatorProcess, token_reviews: dict[str, str]  # noqa: F811
) -> None:
    for name in ("gauges-running", "gauges-ended"):
        running_job(cluster, token_reviews, SQUAD, name, "squad")
        assert post_progress(operator, name, {"stage": "squad", "progress": FIGURES})[0] == 200
        cluster.wait(lambda: training(operator, name), what=f"{name} gauges")
    cluster.set_mpijob_conditions(NS, "gauges-ended-squad", "Created", "Running", "Succeeded")
    cluster.wait(lambda: status(cluster, "gauges-ended").get("phase") == "Succeeded", what="Succeeded")
    assert status(cluster, "gauges-ended")["progress"]  # the figures are still in its status: never re-exported

    operator.stop()
    operator.start()
    cluster.wait(lambda: serving(operator), what="/metrics of the new process")
    back = cluster.wait(lambda: training(operator, "gauges-running"), what="gauges after the restart")
    assert back == expected("squad", FIGURES, status(cluster, "gauges-running")["progress"]["percent"] / 100)
    every = len(cluster.custom.list_cluster_custom_object("bertoperator.io", "v1alpha1", "berttrainingjobs")["items"])
    cluster.wait(lambda: jobs_known(operator) == every, what="every job seen by the new process (its resync counts them)")
    assert training(operator, "gauges-ended") == {}
    [(_, build, value)] = [sample for sample in samples(operator) if sample[0] == "bertoperator_build_info"]
    assert value == 1 and build["version"] == package_version() != "unknown"
    assert build["trainer_image"] == DEFAULT_TRAINER_IMAGE and build["python"].count(".") == 2

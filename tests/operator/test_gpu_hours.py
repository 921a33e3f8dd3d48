"""GPU-hours per stage and per job (reconcile/usage.py), through the real reconciler against the recording fake.

Each case plays the MPI Operator's conditions with the transition times it writes, and checks the stage entry and
``status.results.gpuHours`` after each sync: an attempt counts from Running to its end, restarts and Kueue's
preemptions included, and nothing is counted twice when a finished stage is planned again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bert_operator.api.parse import parse_job
from bert_operator.reconcile import Reconciler
from bert_operator.reconcile import usage
from bert_operator.render import render_mpijob
from bert_operator.tasks import stages_of
from tests.operator.strict import crd_schema, load_crd, pruned
from tests.operator.fakes import EVICTED_WORKER, GLUE, PRETRAIN, QUEUED_GLUE, Clock, KueueCluster, job, sync

REPO = Path(__file__).resolve().parents[2]
EIGHT_GPUS = {"resources": {"workers": 2, "gpusPerWorker": 4}}


def conditions(cluster: KueueCluster, name: str, *states: tuple[str, str, str], **status: Any) -> None:
    """The MPI Operator's conditions on an MPIJob: (type, status, lastTransitionTime) each."""
    cluster.mpijobs[name].setdefault("status", {})["conditions"] = [
        {"type": kind, "status": value, "reason": f"MPIJob{kind}", "message": kind.lower(), "lastTransitionTime": when}
        for kind, value, when in states]
    cluster.mpijobs[name]["status"].update(status)


def running(cluster: KueueCluster, name: str, since: str) -> None:
    conditions(cluster, name, ("Created", "True", since), ("Running", "True", since), startTime=since)


def succeeded(cluster: KueueCluster, name: str, since: str, end: str) -> None:
    conditions(cluster, name, ("Created", "True", since), ("Running", "False", end), ("Succeeded", "True", end),
               startTime=since, completionTime=end)


def make(clock: Clock, cluster: KueueCluster, spec: dict[str, Any]) -> tuple[Reconciler, dict[str, Any]]:
    reconciler = Reconciler(api=cluster, events=cluster, clock=clock)
    body = job(spec)
    sync(reconciler, body)
    return reconciler, body


def test_gpus_are_read_from_the_mpijob_as_rendered() -> None:
    for resources, gpus in (({"workers": 2, "gpusPerWorker": 4}, 8), ({"workers": 3, "gpusPerWorker": 0}, 0),
                            ({}, 8)):
        parsed = parse_job(job({**GLUE, "resources": resources}))
        assert usage.mpijob_gpus(render_mpijob(parsed, stages_of(parsed.spec)[0])) == gpus, resources


def test_a_stage_counts_gpus_times_its_running_time_once() -> None:
    clock, cluster = Clock(), KueueCluster()
    reconciler, body = make(clock, cluster, {**GLUE, **EIGHT_GPUS})
    running(cluster, "j-glue", "2026-12-01T10:00:00Z")
    sync(reconciler, body)
    stage = body["status"]["stages"][0]
    assert (stage["runningSince"], stage["gpus"]) == ("2026-12-01T10:00:00Z", 8)
    assert "gpuHours" not in stage and "gpuHours" not in (body["status"].get("results") or {})
    succeeded(cluster, "j-glue", "2026-12-01T10:00:00Z", "2026-12-01T11:30:00Z")
    sync(reconciler, body)
    stage = body["status"]["stages"][0]
    assert (stage["runningSeconds"], stage["gpuHours"], stage["gpus"]) == (5400, 12.0, 8)
    assert "runningSince" not in stage
    assert body["status"]["results"]["gpuHours"] == 12.0 and body["status"]["phase"] == "Succeeded"
    # The API server hands the status back; planning it again (a resync, a new generation) adds nothing.
    cluster.calls.clear()
    body["metadata"]["generation"] = 2
    sync(reconciler, body)
    assert body["status"]["results"]["gpuHours"] == 12.0 and body["status"]["stages"][0]["gpuHours"] == 12.0


def test_a_restarted_stage_counts_the_failed_attempt_and_the_next() -> None:
    clock, cluster = Clock(), KueueCluster()
    reconciler, body = make(clock, cluster, {**GLUE, **EIGHT_GPUS})
    running(cluster, "j-glue", "2026-12-01T10:00:00Z")
    sync(reconciler, body)
    cluster.pods = [EVICTED_WORKER]
    conditions(cluster, "j-glue", ("Created", "True", "2026-12-01T10:00:00Z"),
               ("Running", "False", "2026-12-01T10:30:00Z"), ("Failed", "True", "2026-12-01T10:30:00Z"),
               startTime="2026-12-01T10:00:00Z")
    clock.now = "2026-12-01T10:30:05Z"
    sync(reconciler, body)
    stage = body["status"]["stages"][0]
    assert stage["phase"] == "Restarting" and stage["restarts"] == 1
    assert (stage["runningSeconds"], stage["gpuHours"]) == (1800, 4.0) and "runningSince" not in stage
    assert body["status"]["results"]["gpuHours"] == 4.0  # a tenant sees what the failed attempt cost at once
    # The failure is seen again (a stale event, a resync) before the MPIJob is gone: counted once.
    sync(reconciler, body)
    assert body["status"]["stages"][0]["gpuHours"] == 4.0
    del cluster.mpijobs["j-glue"]
    cluster.pods = []
    clock.now = "2026-12-01T10:31:00Z"
    sync(reconciler, body)
    running(cluster, "j-glue", "2026-12-01T11:00:00Z")
    sync(reconciler, body)
    succeeded(cluster, "j-glue", "2026-12-01T11:00:00Z", "2026-12-01T12:00:00Z")
    sync(reconciler, body)
    stage = body["status"]["stages"][0]
    assert (stage["runningSeconds"], stage["gpuHours"], stage["restarts"]) == (5400, 12.0, 1)
    assert body["status"]["results"]["gpuHours"] == 12.0


def test_a_preempted_stage_stops_counting_until_kueue_admits_it_again() -> None:
    clock, cluster = Clock(), KueueCluster()
    reconciler, body = make(clock, cluster, {**QUEUED_GLUE, **EIGHT_GPUS})
    cluster.add_workload("j-glue")
    cluster.admit("j-glue")
    running(cluster, "j-glue", "2026-12-01T10:00:00Z")
    sync(reconciler, body)
    assert body["status"]["phase"] == "Running"
    cluster.preempt("j-glue")
    clock.now = "2026-12-01T10:15:00Z"
    sync(reconciler, body)
    stage = body["status"]["stages"][0]
    assert body["status"]["phase"] == "Queued" and (stage["runningSeconds"], stage["gpuHours"]) == (900, 2.0)
    clock.now = "2026-12-01T10:20:00Z"
    sync(reconciler, body)  # still queued: nothing more
    assert body["status"]["stages"][0]["gpuHours"] == 2.0
    cluster.admit("j-glue")
    running(cluster, "j-glue", "2026-12-01T10:30:00Z")
    sync(reconciler, body)
    assert body["status"]["stages"][0]["runningSince"] == "2026-12-01T10:30:00Z"
    succeeded(cluster, "j-glue", "2026-12-01T10:30:00Z", "2026-12-01T11:00:00Z")
    sync(reconciler, body)
    assert body["status"]["results"]["gpuHours"] == 6.0 and body["status"]["stages"][0]["runningSeconds"] == 2700


def test_a_stage_never_seen_running_counts_from_its_start_time() -> None:
    clock, cluster = Clock(), KueueCluster()
    reconciler, body = make(clock, cluster, {**GLUE, **EIGHT_GPUS})
    succeeded(cluster, "j-glue", "2026-12-01T10:00:00Z", "2026-12-01T10:45:00Z")  # between two watch events
    sync(reconciler, body)
    assert body["status"]["stages"][0]["gpuHours"] == 6.0 and body["status"]["results"]["gpuHours"] == 6.0


def test_a_pipeline_sums_its_stages_and_a_cpu_stage_counts_zero() -> None:
    clock, cluster = Clock(), KueueCluster()
    reconciler, body = make(clock, cluster, {**PRETRAIN, **EIGHT_GPUS})
    running(cluster, "j-phase1", "2026-12-01T10:00:00Z")
    sync(reconciler, body)
    succeeded(cluster, "j-phase1", "2026-12-01T10:00:00Z", "2026-12-01T13:00:00Z")
    sync(reconciler, body)
    running(cluster, "j-phase2", "2026-12-01T13:01:00Z")
    sync(reconciler, body)
    assert body["status"]["results"]["gpuHours"] == 24.0  # phase2 is still open
    succeeded(cluster, "j-phase2", "2026-12-01T13:01:00Z", "2026-12-01T14:01:00Z")
    sync(reconciler, body)
    assert [s["gpuHours"] for s in body["status"]["stages"]] == [24.0, 8.0]
    assert body["status"]["results"]["gpuHours"] == 32.0

    cpu_clock, cpu_cluster = Clock(), KueueCluster()
    cpu_reconciler, cpu_body = make(cpu_clock, cpu_cluster, {**GLUE, "resources": {"workers": 2, "gpusPerWorker": 0}})
    succeeded(cpu_cluster, "j-glue", "2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z")
    sync(cpu_reconciler, cpu_body)
    assert cpu_body["status"]["results"]["gpuHours"] == 0 and cpu_body["status"]["stages"][0]["runningSeconds"] == 3600


def test_the_api_server_keeps_every_gpu_field_the_operator_writes() -> None:
    """The real API server prunes status fields the CRD does not declare: the stage's GPU bookkeeping must survive."""
    schema = crd_schema(load_crd(REPO / "manifests" / "crd.yaml"), "v1alpha1")
    status = {"stages": [{"name": "glue", "gpus": 8, "runningSince": "2026-12-01T10:00:00Z", "runningSeconds": 5400,
                          "gpuHours": 12.0}], "results": {"gpuHours": 12.0, "accuracy": 0.8}}
    assert pruned({"status": status}, schema)["status"] == status


def test_a_broken_time_on_a_hand_edited_status_counts_nothing_rather_than_failing() -> None:
    entry = {"name": "glue", "runningSince": "yesterday", "gpus": 8}
    assert usage.close_attempt(entry, None, "2026-12-01T10:00:00Z")["gpuHours"] == 0

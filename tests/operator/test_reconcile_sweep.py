"""A fine-tuning sweep through the reconciler, against the recording fake: its trials run at most maxParallel at once
and in order, each as a stage of its own (a failed trial does not end the sweep unless too few can succeed), and the
best trial by the selected dev metric is named, its exports the job's artifacts."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bert_operator.reconcile import Reconciler
from bert_operator.reports import merge_report
from bert_operator.api.parse import parse_job
from tests.operator.fakes import GLUE, NOW, FakeCluster, condition, job, record, sync

#: 8 trials: the paper's four learning rates x two seeds.
SWEEP = {**GLUE, "task": {"glue": {"taskName": "MRPC", "sweep": {"seeds": [1, 2], "maxParallel": 2}}}}


def reconciler_for(cluster: FakeCluster) -> Reconciler:
    return Reconciler(api=cluster, events=cluster, clock=lambda: NOW)


def running_mpijobs(cluster: FakeCluster) -> list[str]:
    return sorted(name for name, m in cluster.mpijobs.items()
                  if not any(c["type"] in ("Succeeded", "Failed") and c["status"] == "True"
                             for c in (m.get("status") or {}).get("conditions") or []))


def report(reconciler: Reconciler, body: dict[str, Any], stage: str, f1: float) -> None:
    patch = merge_report(parse_job(body), body["status"], {"stage": stage, "results": {
        "task": "MRPC", "dev": {"accuracy": f1 - 0.05, "f1": f1}, "exported": ["hf"]}}, NOW)
    record(reconciler, body, patch)


def test_trials_run_at_most_max_parallel_at_once_in_order_and_the_best_by_f1_is_chosen() -> None:
    cluster = FakeCluster()
    reconciler = reconciler_for(cluster)
    body = job(SWEEP, name="s")
    sync(reconciler, body)
    assert sorted(cluster.mpijobs) == ["s-t0", "s-t1"]  # two at once, the first two
    commands = {name: " ".join(m["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["command"])
                for name, m in cluster.mpijobs.items()}
    assert "--learning_rate 5e-05 --num_train_epochs 3 --seed 1" in commands["s-t0"]
    assert "--learning_rate 5e-05 --num_train_epochs 3 --seed 2" in commands["s-t1"]
    assert "--output_dir s3://results/glue/glue/t1 " in commands["s-t1"]  # each trial its own folder
    status = body["status"]
    assert [t["name"] for t in status["trials"]] == [f"t{k}" for k in range(8)]
    assert status["trials"][2] == {"index": 2, "name": "t2", "phase": "Pending", "hyperparameters": {
        "learningRate": 4e-05, "seed": 1, "epochs": 3.0, "batchSizePerGpu": 32}}
    f1 = {0: 0.80, 1: 0.84, 2: 0.91, 3: 0.86, 4: 0.89, 5: 0.70, 6: 0.91, 7: 0.88}
    seen_at_once = 0
    for _ in range(12):
        running = running_mpijobs(cluster)
        seen_at_once = max(seen_at_once, len(running))
        if not running:
            break
        first = running[0]
        cluster.set_conditions(first, "Created", "Running", "Succeeded")
        report(reconciler, body, first.rsplit("-", 1)[1], f1[int(first.rsplit("-t", 1)[1])])
        sync(reconciler, body)
    assert seen_at_once == 2 and len(cluster.mpijobs) == 8
    status = body["status"]
    assert status["phase"] == "Succeeded"
    best = status["results"]["best"]
    assert (best["trial"], best["metric"], best["value"], best["final"]) == ("t2", "f1", 0.91, True)  # t6 ties: t2 first
    assert [t["index"] for t in status["trials"] if t.get("best")] == [2]
    assert status["trials"][5]["metrics"] == {"accuracy": pytest.approx(0.65), "f1": 0.70}
    assert {a["stage"] for a in status["results"]["artifacts"]} == {"t2"}
    assert all(a["uri"].startswith("s3://results/glue/glue/t2/export/") for a in status["results"]["artifacts"])


def test_a_failed_trial_does_not_end_the_sweep_until_too_few_can_succeed() -> None:
    cluster = FakeCluster()
    reconciler = reconciler_for(cluster)
    spec = copy.deepcopy(SWEEP)
    spec["task"]["glue"]["sweep"] = {"learningRates": [5e-5, 3e-5, 2e-5], "maxParallel": 3, "minSucceeded": 2}
    spec["runPolicy"] = {"backoffLimit": 0}
    body = job(spec, name="f")
    sync(reconciler, body)
    assert sorted(cluster.mpijobs) == ["f-t0", "f-t1", "f-t2"]
    cluster.set_conditions("f-t0", "Created", "Failed")
    sync(reconciler, body)
    assert body["status"]["phase"] != "Failed" and body["status"]["trials"][0]["phase"] == "Failed"
    cluster.set_conditions("f-t1", "Created", "Failed")  # 2 of 3 failed: minSucceeded 2 cannot be met
    sync(reconciler, body)
    assert body["status"]["phase"] == "Running" or body["status"]["phase"] != "Failed"  # t2 still runs: not yet
    cluster.set_conditions("f-t2", "Created", "Running", "Succeeded")
    sync(reconciler, body)
    failed = condition(body["status"], "Failed")
    assert body["status"]["phase"] == "Failed" and failed["reason"] == "TrialsFailed"
    assert "2 of 3 trials failed, so fewer than minSucceeded (2) can succeed" in failed["message"]


@pytest.mark.parametrize("sweep,field,message", [
    ({"learningRates": []}, "spec.task.glue.sweep.learningRates", "at least 1"),
    ({"seeds": list(range(9)), "learningRates": [1e-5] * 8}, "spec.task.glue.sweep", "makes 72 trials"),
    ({"select": {"metric": "exact_match"}}, "spec.task.glue.sweep.select.metric", "GLUE MRPC reports accuracy, f1"),
    ({"select": {"metric": "bleu"}}, "spec.task.glue.sweep.select.metric", "'accuracy'"),
    ({"minSucceeded": 5}, "spec.task.glue.sweep.minSucceeded", "at most the number of trials (4)"),
    ({"keepTrialCheckpoints": "false"}, "spec.task.glue.sweep.keepTrialCheckpoints", "must be true or false"),
])
def test_a_bad_sweep_is_refused_naming_the_field(sweep: dict[str, Any], field: str, message: str) -> None:
    from bert_operator.api import SpecError

    spec = copy.deepcopy(SWEEP)
    spec["task"]["glue"]["sweep"] = sweep
    with pytest.raises(SpecError) as refused:
        parse_job(job(spec))
    shown = str(refused.value)
    assert field in shown and message in shown, shown


def test_trials_report_progress_side_by_side_and_the_job_shows_their_mean() -> None:
    """Two trials' progress reports interleave (they run at once): neither is refused as late, each lands on its own
    trial, and the job's progress is the mean over all trials; a trial's own step still cannot go back."""
    from bert_operator.reports import StaleReport

    cluster = FakeCluster()
    reconciler = reconciler_for(cluster)
    body = job(SWEEP, name="p")
    sync(reconciler, body)

    def progress(stage: str, step: int) -> dict[str, Any]:
        return merge_report(parse_job(body), body["status"], {"stage": stage, "progress": {
            "step": step, "totalSteps": 100, "updatedAt": f"2026-12-01T10:00:{step:02d}Z"}}, NOW)

    record(reconciler, body, progress("t1", 50))
    record(reconciler, body, progress("t0", 30))  # an earlier trial after a later one: not stale
    trials = body["status"]["trials"]
    assert (trials[0]["percent"], trials[1]["percent"]) == (30, 50)
    assert body["status"]["progress"]["percent"] == (30 + 50) // 8
    assert body["status"]["progress"]["display"] == "10% 0/8 trials"
    with pytest.raises(StaleReport):
        progress("t1", 40)


def test_a_policy_limits_a_sweeps_trials_and_trials_at_once() -> None:
    from bert_operator.policy import PolicyInput, parse_policy
    from tests.operator.test_reconcile_policy import LABELS

    policy = parse_policy({"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingPolicy",
                           "metadata": {"name": "small"}, "spec": {"namespaceSelector": {"matchLabels": LABELS},
                                                                   "limits": {"maxTrials": 4, "maxParallelTrials": 1}}})
    cluster = FakeCluster()
    reconciler = Reconciler(api=cluster, events=cluster, clock=lambda: NOW,
                            policies=lambda namespace: PolicyInput(LABELS, (policy,)))
    body = job(SWEEP, name="big")
    sync(reconciler, body)
    failed = condition(body["status"], "Failed")
    assert failed["reason"] == "PolicyViolation" and cluster.mpijobs == {}
    assert "spec.task.glue.sweep: makes 8 trials, more than the 4 allowed by BertTrainingPolicy small" in failed["message"]
    assert "spec.task.glue.sweep.maxParallel: 2 exceeds 1 trials at once allowed by BertTrainingPolicy small" in \
        failed["message"]


def test_kubectl_bertjob_shows_the_trials_with_the_best_marked() -> None:
    """`get` says how many trials ended; `describe` lists them with their hyperparameters and dev metrics, the best
    marked, and by what it was chosen. A trial's fields are tenant-influenced (metrics from reports): escaped."""
    from bert_operator.kubectl.describe import describe
    from bert_operator.kubectl.tables import table

    cluster = FakeCluster()
    reconciler = reconciler_for(cluster)
    body = job(SWEEP, name="shown")
    sync(reconciler, body)
    for name, f1 in (("shown-t0", 0.81), ("shown-t1", 0.87)):
        cluster.set_conditions(name, "Created", "Running", "Succeeded")
        report(reconciler, body, name.rsplit("-", 1)[1], f1)
        sync(reconciler, body)
    listed = table([body])
    assert "2/8 trials" in listed
    shown = describe(body, [])
    lines = shown.split("Trials:\n", 1)[1].splitlines()
    header = next(line for line in lines if "LEARNING-RATE" in line)
    assert header.split() == ["TRIAL", "LEARNING-RATE", "SEED", "EPOCHS", "BATCH", "PHASE", "ACCURACY", "F1",
                              "GPU-HOURS", "MPIJOB"]
    best_row = next(line for line in lines if " t1 " in line)
    assert best_row.split()[:2] == ["*", "t1"] and "0.8700" in best_row and "Succeeded" in best_row
    assert "best so far: t1 by f1 0.8700" in shown


def test_a_served_sweep_serves_its_best_trials_export() -> None:
    """spec.serve on a sweep: the InferenceService's predictor loads the best trial's Triton repository."""
    cluster = FakeCluster()
    reconciler = reconciler_for(cluster)
    spec = copy.deepcopy(SWEEP)
    spec["task"]["glue"]["sweep"] = {"learningRates": [5e-5, 2e-5], "maxParallel": 2}
    spec["serve"] = {"replicas": 1}
    body = job(spec, name="served")
    sync(reconciler, body)
    for name, f1 in (("served-t0", 0.80), ("served-t1", 0.88)):
        cluster.set_conditions(name, "Created", "Running", "Succeeded")
        report(reconciler, body, name.rsplit("-", 1)[1], f1)
    sync(reconciler, body)
    assert body["status"]["phase"] == "Succeeded" and body["status"]["results"]["best"]["trial"] == "t1"
    [isvc] = cluster.isvcs.values()
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "s3://results/glue/glue/t1/export/triton"
    assert body["status"]["serving"]["modelVersion"] == "1 (t1)"


def test_an_evicted_trial_restarts_after_its_backoff_while_the_others_run_on() -> None:
    """A trial is a stage: an evicted worker restarts it (a new MPIJob of the same name after the backoff, counted on
    its stage), the other trial is not touched, and the sweep is Running throughout."""
    from tests.operator.fakes import Clock, pod

    cluster, clock = FakeCluster(), Clock()
    reconciler = Reconciler(api=cluster, events=cluster, clock=clock)
    spec = copy.deepcopy(SWEEP)
    spec["task"]["glue"]["sweep"] = {"learningRates": [5e-5, 2e-5], "maxParallel": 2}
    body = job(spec, name="j")
    sync(reconciler, body)
    for name in ("j-t0", "j-t1"):
        cluster.set_conditions(name, "Created", "Running")
    sync(reconciler, body)
    first_uid = cluster.mpijobs["j-t0"]["metadata"]["uid"]
    cluster.pods = [pod("j-t0-worker-0", stage="t0", phase="Failed", reason="Evicted", message="The node was drained.")]
    cluster.mpijobs["j-t0"]["status"]["conditions"] = [
        {"type": "Created", "status": "True", "reason": "MPIJobCreated", "message": "created"},
        {"type": "Failed", "status": "True", "reason": "MPIJobEvicted", "message": "1/1 workers are evicted"}]
    cluster.events.clear()
    sync(reconciler, body)
    t0, t1 = body["status"]["stages"]
    assert (t0["phase"], t0["restarts"], t1["phase"]) == ("Restarting", 1, "Running")
    assert body["status"]["phase"] == "Running" and body["status"]["trials"][0]["phase"] == "Restarting"
    assert ("Warning", "StageRestarted") in {(kind, reason) for kind, reason, _ in cluster.events}
    cluster.mpijobs.pop("j-t0")  # the garbage collector
    clock.now = "2026-12-01T10:00:30Z"  # past the first backoff
    sync(reconciler, body)
    assert cluster.mpijobs["j-t0"]["metadata"]["uid"] != first_uid and "j-t1" in cluster.mpijobs
    assert body["status"]["stages"][0]["restarts"] == 1


def test_queued_trials_wait_for_kueue_each_and_count_against_max_parallel() -> None:
    """With a queue, each trial's MPIJob is created suspended and admitted by Kueue on its own: a queued trial is
    Queued (the sweep too while none runs) and holds its slot, so no third MPIJob is made."""
    from tests.operator.fakes import KueueCluster

    cluster = KueueCluster()
    reconciler = reconciler_for(cluster)
    body = job({**SWEEP, "queueName": "team-a"}, name="q")
    sync(reconciler, body)
    assert sorted(cluster.mpijobs) == ["q-t0", "q-t1"]
    assert all(m["spec"]["runPolicy"]["suspend"] is True for m in cluster.mpijobs.values())
    cluster.add_workload("q-t0")
    sync(reconciler, body)
    assert body["status"]["phase"] == "Queued" and sorted(cluster.mpijobs) == ["q-t0", "q-t1"]
    cluster.admit("q-t0")
    sync(reconciler, body)
    trials = body["status"]["trials"]
    assert (trials[0]["phase"], trials[1]["phase"], body["status"]["phase"]) == ("Running", "Queued", "Running")
    assert sorted(cluster.mpijobs) == ["q-t0", "q-t1"]


def test_once_the_sweep_cannot_succeed_no_trial_starts_and_it_fails() -> None:
    cluster = FakeCluster()
    reconciler = reconciler_for(cluster)
    spec = copy.deepcopy(SWEEP)
    spec["task"]["glue"]["sweep"] = {"learningRates": [5e-5, 3e-5, 2e-5], "maxParallel": 1, "minSucceeded": 3}
    spec["runPolicy"] = {"backoffLimit": 0}
    body = job(spec, name="d")
    sync(reconciler, body)
    assert sorted(cluster.mpijobs) == ["d-t0"]
    cluster.set_conditions("d-t0", "Created", "Failed")
    sync(reconciler, body)
    assert sorted(cluster.mpijobs) == ["d-t0"]  # t1 and t2 are never made
    assert body["status"]["phase"] == "Failed" and condition(body["status"], "Failed")["reason"] == "TrialsFailed"
    assert [t["phase"] for t in body["status"]["trials"]] == ["Failed", "Pending", "Pending"]


def first_epoch(reconciler: Reconciler, body: dict[str, Any], stage: str, mcc: float, classes: int) -> None:
    patch = merge_report(parse_job(body), body["status"], {"stage": stage, "results": {
        "task": "CoLA", "firstEpoch": {"mcc": mcc, "accuracy": 0.69, "classes": classes}}}, NOW)
    record(reconciler, body, patch)


def test_early_stop_ends_a_trial_that_predicts_one_class_while_another_learns() -> None:
    """sweep.earlyStop: each trial reports its dev metric after the first epoch; one that predicts a single class
    (MCC 0: the majority-class baseline) while another is a margin better is stopped: its MPIJob deleted, never
    restarted, the reason on its trial; the sweep goes on with the rest and the stopped one is no failure of it."""
    cluster = FakeCluster()
    reconciler = reconciler_for(cluster)
    spec = copy.deepcopy(SWEEP)
    spec["task"]["glue"] = {"taskName": "CoLA", "sweep": {"learningRates": [5e-5, 2e-5], "maxParallel": 2,
                                                          "earlyStop": True}}
    body = job(spec, name="e")
    sync(reconciler, body)
    command = " ".join(cluster.mpijobs["e-t0"]["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]
                       ["containers"][0]["command"])
    assert "--first_epoch_eval" in command
    for name in ("e-t0", "e-t1"):
        cluster.set_conditions(name, "Created", "Running")
    first_epoch(reconciler, body, "t0", 0.0, classes=1)  # alone: nothing to compare with, it goes on
    sync(reconciler, body)
    assert "e-t0" in cluster.mpijobs and body["status"]["trials"][0]["firstEpoch"] == {"mcc": 0, "accuracy": 0.69,
                                                                                         "classes": 1}
    first_epoch(reconciler, body, "t1", 0.21, classes=2)
    cluster.calls.clear()
    sync(reconciler, body)
    assert ("delete", "mpijobs", "e-t0") in cluster.calls
    assert cluster.mpijobs["e-t0"]["metadata"].get("deletionTimestamp")  # (foreground: its pods go first)
    t0 = body["status"]["trials"][0]
    assert t0["phase"] == "Failed" and t0["stopped"] == ("stopped early: after its first epoch it predicts one class for "
                                                         "every dev example (mcc 0) while t1 has 0.21")
    assert body["status"]["phase"] == "Running" and "e-t1" in cluster.mpijobs
    cluster.mpijobs.pop("e-t0")  # the garbage collector
    sync(reconciler, body)  # never made again
    assert "e-t0" not in cluster.mpijobs and body["status"]["trials"][0]["phase"] == "Failed"
    cluster.set_conditions("e-t1", "Created", "Running", "Succeeded")
    patch = merge_report(parse_job(body), body["status"], {"stage": "t1", "results": {
        "task": "CoLA", "dev": {"mcc": 0.33}}}, NOW)
    record(reconciler, body, patch)
    sync(reconciler, body)
    assert body["status"]["phase"] == "Succeeded" and body["status"]["results"]["best"]["trial"] == "t1"


def test_early_stop_is_for_classifiers_only() -> None:
    from bert_operator.api import SpecError

    spec = {**GLUE, "task": {"squad": {"sweep": {"earlyStop": True}}}}
    with pytest.raises(SpecError) as refused:
        parse_job(job(spec))
    assert "spec.task.squad.sweep.earlyStop: stops a classifier that predicts one class" in str(refused.value)

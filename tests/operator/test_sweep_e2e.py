"""A fine-tuning sweep with the real operator process against the strict emulated API: 8 trials, never more than
maxParallel (2) trial MPIJobs unfinished at once, each trial's results posted by its own pod to the progress
endpoint, and the best trial by F1 named on a status the API server's pruning keeps."""

from __future__ import annotations

import copy
from typing import Any, Iterator

import time

import kmock
import kubernetes
import pytest
import yaml

from tests.conftest import REPO
from tests.operator.cluster import EmulatedCluster, OperatorProcess
from tests.operator.test_operator_e2e import NS, post_progress, review_answer

GLUE = yaml.safe_load((REPO / "examples" / "sweep-mrpc.yaml").read_text())
EMULATED: dict[str, Any] = {}
#: Each trial's dev F1, as its results report gives it: t2 and t6 tie, the lower index is chosen.
F1 = {0: 0.80, 1: 0.84, 2: 0.91, 3: 0.86, 4: 0.89, 5: 0.70, 6: 0.91, 7: 0.88}


@pytest.fixture(scope="module")
def operator(emulated: EmulatedCluster) -> Iterator[OperatorProcess]:
    verdict = {"pod": "", "uid": "", "audience": ""}

    def answer_review(request: kmock.Request) -> dict[str, Any]:
        del emulated.emulator.objects["authentication.k8s.io/v1/tokenreviews", None, None]
        return review_answer(request.data["spec"]["audiences"], verdict["audience"], verdict["pod"], verdict["uid"])

    async def install() -> None:
        emulated.emulator["post", kmock.resource("authentication.k8s.io/v1/tokenreviews")] << answer_review

    emulated.call(install)
    process = OperatorProcess(emulated, "--progress-url", "http://bert-operator.bert-operator.svc:8081",
                              resync_seconds=1.0).start()
    process.verdict = verdict  # type: ignore[attr-defined]
    yield process
    process.stop()


def unfinished(cluster: EmulatedCluster) -> list[str]:
    return sorted(m["metadata"]["name"] for m in cluster.mpijobs(NS) if m["metadata"]["name"].startswith("sweep-")
                  and not any(c["type"] in ("Succeeded", "Failed") for c in (m.get("status") or {}).get("conditions") or []))


def test_an_eight_trial_sweep_runs_two_at_a_time_and_names_the_best(cluster: EmulatedCluster, operator: OperatorProcess) -> None:
    document = copy.deepcopy(GLUE)
    document["metadata"] = {"name": "sweep", "namespace": NS}
    document["spec"]["task"]["glue"]["sweep"] = {"seeds": [1, 2], "maxParallel": 2, "keepTrialCheckpoints": False}
    cluster.apply_job(document, uid="uid-sweep")
    status = lambda: cluster.job(NS, "sweep").get("status") or {}  # noqa: E731
    most, done = 0, 0
    while done < 8:
        running = cluster.wait(lambda: unfinished(cluster), what=f"a trial MPIJob after {done} ended")
        most = max(most, len(running))
        name = running[0]
        trial = name.rsplit("-", 1)[1]
        pod = f"{name}-worker-0"
        cluster.run_pod(NS, pod, "sweep", uid=f"pod-{trial}", stage=trial)
        operator.verdict.update(pod=pod, uid=f"pod-{trial}", audience=f"bert-operator/{NS}/sweep")  # type: ignore[attr-defined]
        f1 = F1[int(trial[1:])]
        code, answer = post_progress(operator, "sweep", {"stage": trial, "results": {
            "task": "MRPC", "dev": {"accuracy": round(f1 - 0.05, 4), "f1": f1}}})
        assert code == 200, answer
        cluster.wait(lambda: (status().get("trials") or [{}] * 8)[int(trial[1:])].get("metrics"), what=f"{trial} metrics")
        cluster.set_mpijob_conditions(NS, name, "Created", "Running", "Succeeded")
        done += 1
        cluster.wait(lambda: sum(1 for t in status().get("trials") or [] if t.get("phase") == "Succeeded") == done,
                     what=f"{done} trials succeeded")
        most = max(most, len(unfinished(cluster)))
    final = cluster.wait(lambda: status().get("phase") == "Succeeded" and status(), what="the sweep Succeeded")
    assert most == 2 and len([m for m in cluster.mpijobs(NS) if m["metadata"]["name"].startswith("sweep-t")]) == 8
    best = final["results"]["best"]
    assert (best["trial"], best["metric"], best["value"], best["final"]) == ("t2", "f1", 0.91, True)
    # What the API server kept of each trial (the status schema declares every field the operator writes).
    assert final["trials"][5] == {"index": 5, "name": "t5", "phase": "Succeeded", "mpiJob": "sweep-t5",
                                  "hyperparameters": {"learningRate": 3e-05, "seed": 2, "epochs": 3, "batchSizePerGpu": 32},
                                  "metrics": {"accuracy": 0.65, "f1": 0.7}}
    assert {a["stage"] for a in final["results"]["artifacts"]} == {"t2"}


def test_then_its_cleanup_job_removes_every_trials_checkpoints_but_the_bests(cluster: EmulatedCluster,
                                                                             operator: OperatorProcess) -> None:
    """keepTrialCheckpoints: false: a batch/v1 Job the strict layer checks against Kubernetes' Job schema, followed
    (by the operator's resyncs) to the Job controller's Complete condition."""
    batch = kubernetes.client.BatchV1Api(cluster.client)
    made = cluster.wait(lambda: next((j for j in batch.list_namespaced_job(NS).items
                                      if j.metadata.name == "sweep-cleanup"), None), what="the cleanup Job")
    [container] = made.spec.template.spec.containers
    removed = [arg for arg in container.command if arg.startswith("/")]
    assert removed == [f"/mnt/pvc/bert-results/sweep-mrpc/glue/t{k}" for k in (0, 1, 3, 4, 5, 6, 7)]  # not t2
    assert [(m.name, m.mount_path, m.read_only) for m in container.volume_mounts] == [
        ("pvc-bert-results", "/mnt/pvc/bert-results", None)]  # the output's claim, writable
    assert made.metadata.owner_references[0].uid == "uid-sweep" and made.metadata.uid
    status = lambda: cluster.job(NS, "sweep").get("status") or {}  # noqa: E731
    assert cluster.wait(lambda: status().get("trialCleanup"), what="trialCleanup")["phase"] == "Running"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    batch.patch_namespaced_job_status("sweep-cleanup", NS, {"status": {
        "conditions": [{"type": "Complete", "status": "True", "lastProbeTime": now, "lastTransitionTime": now}],
        "succeeded": 1, "startTime": now, "completionTime": now}})
    cleanup = cluster.wait(lambda: status()["trialCleanup"]["phase"] == "Succeeded" and status()["trialCleanup"],
                           what="the cleanup Succeeded")
    assert (cleanup["kept"], cleanup["removed"]) == ("t2", ["t0", "t1", "t3", "t4", "t5", "t6", "t7"])
    assert [t.get("checkpoints") for t in status()["trials"]] == ["removed"] * 2 + [None] + ["removed"] * 5
    assert status()["phase"] == "Succeeded"
    reasons = [e["reason"] for e in cluster.events() if e["involved_object"]["name"] == "sweep"]
    assert {"TrialCleanupStarted", "TrialCheckpointsRemoved"} <= set(reasons)

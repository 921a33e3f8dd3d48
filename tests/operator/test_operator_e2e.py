"""The real operator process against the Kubernetes API emulator over HTTP on loopback."""

from __future__ import annotations

import copy
import datetime
import json
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import kmock
import kubernetes
import pytest
import yaml

from bert_common.contract import format_utc, parse_utc
from tests.conftest import REPO
from tests.operator.cluster import MPIJOBS, EmulatedCluster, OperatorProcess
from tests.operator.fakes import condition

SQUAD = yaml.safe_load((REPO / "examples" / "squad-v1.1.yaml").read_text())
TINY = yaml.safe_load((REPO / "examples" / "tiny-pretrain-s3.yaml").read_text())
NS = "ml-training"


def named(document: dict[str, Any], name: str, namespace: str = NS) -> dict[str, Any]:
    copied = copy.deepcopy(document)
    copied["metadata"] = {"name": name, "namespace": namespace}
    return copied


#: `cluster` (conftest.py): kmock behind the strict layer (tests/operator/strict.py): schema 422s, pruning, defaults,
#: number normalisation and generation as a real API server has them, for BertTrainingJobs and MPIJobs.
EMULATED: dict[str, Any] = {}


@pytest.fixture(scope="module")
def operator(emulated: EmulatedCluster) -> Iterator[OperatorProcess]:
    process = OperatorProcess(emulated, "--progress-url", "http://bert-operator.bert-operator.svc:8081").start()
    yield process
    process.stop()


def status(cluster: EmulatedCluster, name: str, namespace: str = NS) -> dict[str, Any]:
    return cluster.job(namespace, name).get("status") or {}


def events_for(cluster: EmulatedCluster, name: str) -> list[tuple[str, str]]:
    return [(e["type"], e["reason"]) for e in cluster.events() if e["involved_object"]["name"] == name]


def test_created_job_gets_one_owned_mpijob_and_a_pending_status(cluster: EmulatedCluster, operator: OperatorProcess) -> None:
    cluster.apply_job(named(SQUAD, "create-1"), uid="uid-create-1")
    mpijob = cluster.wait(lambda: cluster.mpijobs(NS) and next((m for m in cluster.mpijobs(NS) if m["metadata"]["name"] == "create-1-squad"), None), what="MPIJob")
    [owner] = mpijob["metadata"]["ownerReferences"]
    assert owner["uid"] == "uid-create-1" and owner["controller"] is True and owner["kind"] == "BertTrainingJob"
    current = cluster.wait(lambda: status(cluster, "create-1").get("phase") == "Pending" and status(cluster, "create-1"), what="Pending")
    assert (current["task"], current["model"], current["workers"], current["gpus"]) == ("squad", "large", 1, 4)
    assert current["stages"][0]["mpiJob"] == "create-1-squad"
    assert "finalizers" not in cluster.job(NS, "create-1")["metadata"]


def test_phase_follows_the_mpijob_conditions(cluster: EmulatedCluster, operator: OperatorProcess) -> None:
    cluster.apply_job(named(SQUAD, "phases-1"), uid="uid-phases-1")
    cluster.wait(lambda: status(cluster, "phases-1").get("phase") == "Pending", what="Pending")
    for conditions, phase in ((("Created",), "Created"), (("Created", "Running"), "Running"),
                              (("Created", "Running", "Restarting"), "Restarting"),
                              (("Created", "Running"), "Running"),
                              (("Created", "Running", "Succeeded"), "Succeeded")):
        # The MPI Operator's completion time, an hour after the attempt was seen Running: GPU-hours = 4 GPUs x 1 h.
        since = (status(cluster, "phases-1").get("stages") or [{}])[0].get("runningSince")
        end = {"completionTime": format_utc(parse_utc(since) + datetime.timedelta(hours=1))} if phase == "Succeeded" else {}
        cluster.set_mpijob_conditions(NS, "phases-1-squad", *conditions, **end)
        cluster.wait(lambda: status(cluster, "phases-1").get("phase") == phase, what=phase)
    final = status(cluster, "phases-1")
    assert final["completionTime"] and final["startTime"]
    # Through the strict API server (pruning, number normalisation): the stage's GPU time and the job's total.
    assert (final["stages"][0]["gpus"], final["stages"][0]["runningSeconds"], final["results"]["gpuHours"]) == (4, 3600, 4)
    assert "runningSince" not in final["stages"][0]
    assert condition(status(cluster, "phases-1"), "Succeeded")["status"] == "True"
    assert condition(status(cluster, "phases-1"), "Running")["status"] == "False"
    assert condition(status(cluster, "phases-1"), "Created")["status"] == "True"
    reasons = [reason for _, reason in events_for(cluster, "phases-1")]
    assert reasons[:1] == ["Pending"] and "Running" in reasons and "Restarting" in reasons and reasons[-1] == "Succeeded"
    assert ("Warning", "Restarting") in events_for(cluster, "phases-1")


def test_failed_mpijob_fails_the_job_with_the_reason(cluster: EmulatedCluster, operator: OperatorProcess) -> None:
    cluster.apply_job(named(SQUAD, "fail-1"), uid="uid-fail-1")
    cluster.wait(lambda: status(cluster, "fail-1").get("phase") == "Pending", what="Pending")
    cluster.set_mpijob_conditions(NS, "fail-1-squad", "Created", "Failed")
    cluster.wait(lambda: status(cluster, "fail-1").get("phase") == "Failed", what="Failed")
    assert condition(status(cluster, "fail-1"), "Failed")["reason"] == "MPIJobFailed"
    assert ("Warning", "Failed") in events_for(cluster, "fail-1")


def test_a_job_read_back_with_normalised_numbers_is_not_an_update(cluster: EmulatedCluster, operator: OperatorProcess) -> None:
    """squad-v1.1.yaml has `epochs: 2` (a float field): the API server stores 2, and acceptedSpec comes back as 2. A
    fresh operator process (no memory of what it wrote) must still see the same spec, not a refused update."""
    cluster.apply_job(named(SQUAD, "numbers-1"), uid="uid-numbers-1")
    cluster.wait(lambda: status(cluster, "numbers-1").get("phase") == "Pending", what="Pending")
    assert status(cluster, "numbers-1")["acceptedSpec"]["task"]["squad"]["epochs"] == 2
    operator.stop()
    operator.start()
    cluster.set_mpijob_conditions(NS, "numbers-1-squad", "Created")
    cluster.wait(lambda: status(cluster, "numbers-1").get("phase") == "Created", what="Created")
    assert condition(status(cluster, "numbers-1"), "SpecApplied")["status"] == "True"
    assert ("Warning", "ImmutableFieldChanged") not in events_for(cluster, "numbers-1")


def test_a_job_the_crd_schema_refuses_never_reaches_the_operator(cluster: EmulatedCluster, operator: OperatorProcess) -> None:
    bad = named(SQUAD, "schema-1")
    bad["spec"]["resources"]["gpusPerWorker"] = -1
    with pytest.raises(kubernetes.client.ApiException) as refused:
        cluster.apply_job(bad, uid="uid-schema-1")
    assert refused.value.status == 422 and "spec.resources.gpusPerWorker" in json.loads(refused.value.body)["message"]


def test_invalid_job_fails_with_field_path_and_creates_nothing(cluster: EmulatedCluster, operator: OperatorProcess) -> None:
    """A job the CRD's schema lets through but a cross-field rule refuses: the operator fails it."""
    bad = named(SQUAD, "invalid-1")
    bad["spec"]["task"]["squad"]["docStride"] = 384
    cluster.apply_job(bad, uid="uid-invalid-1")
    cluster.wait(lambda: status(cluster, "invalid-1").get("phase") == "Failed", what="Failed")
    valid = condition(status(cluster, "invalid-1"), "Valid")
    assert valid["status"] == "False" and valid["reason"] == "InvalidSpec"
    assert "spec.task.squad.docStride: must be < maxSeqLength (384), got 384" in valid["message"]
    assert cluster.wait(lambda: ("Warning", "InvalidSpec") in events_for(cluster, "invalid-1"), what="the Event")
    assert not [m for m in cluster.mpijobs(NS) if m["metadata"]["name"].startswith("invalid-1")]


def test_two_phase_pretraining_chains_phase2_from_phase1(cluster: EmulatedCluster, operator: OperatorProcess) -> None:
    cluster.apply_job(named(TINY, "chain-1"), uid="uid-chain-1")
    cluster.wait(lambda: status(cluster, "chain-1").get("currentStage") == "phase1", what="phase1")
    cluster.set_mpijob_conditions(NS, "chain-1-phase1", "Created", "Running")
    cluster.wait(lambda: status(cluster, "chain-1").get("phase") == "Running", what="Running")
    cluster.set_mpijob_conditions(NS, "chain-1-phase1", "Created", "Running", "Succeeded")
    phase2 = cluster.wait(lambda: next((m for m in cluster.mpijobs(NS) if m["metadata"]["name"] == "chain-1-phase2"), None), what="phase2")
    command = phase2["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--init_checkpoint") + 1] == "s3://bert-demo/results/bert-tiny/phase1"
    current = cluster.wait(lambda: status(cluster, "chain-1").get("currentStage") == "phase2" and status(cluster, "chain-1"), what="phase2 current")
    assert current["phase"] != "Succeeded" and current["stages"][0]["phase"] == "Succeeded"
    cluster.set_mpijob_conditions(NS, "chain-1-phase2", "Created", "Running", "Succeeded")
    cluster.wait(lambda: status(cluster, "chain-1").get("phase") == "Succeeded", what="Succeeded")
    assert [s["phase"] for s in status(cluster, "chain-1")["stages"]] == ["Succeeded", "Succeeded"]


def test_suspend_passes_through_and_other_changes_are_refused(cluster: EmulatedCluster, operator: OperatorProcess) -> None:
    cluster.apply_job(named(SQUAD, "update-1"), uid="uid-update-1")
    cluster.wait(lambda: status(cluster, "update-1").get("phase") == "Pending", what="Pending")
    patch = {"metadata": {"generation": 2}, "spec": {"runPolicy": {"suspend": True}}}
    cluster.custom.patch_namespaced_custom_object("bertoperator.io", "v1alpha1", NS, "berttrainingjobs", "update-1", patch)
    mpijob = lambda: next(m for m in cluster.mpijobs(NS) if m["metadata"]["name"] == "update-1-squad")  # noqa: E731
    cluster.wait(lambda: mpijob()["spec"]["runPolicy"].get("suspend") is True, what="suspended MPIJob")

    change = {"metadata": {"generation": 3}, "spec": {"resources": {"workers": 3}}}
    cluster.custom.patch_namespaced_custom_object("bertoperator.io", "v1alpha1", NS, "berttrainingjobs", "update-1", change)
    refused = cluster.wait(lambda: (c := condition(status(cluster, "update-1"), "SpecApplied")) and c["status"] == "False" and c,
                           what="refusal")
    assert refused["reason"] == "ImmutableFieldChanged" and refused["observedGeneration"] == 3
    assert mpijob()["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"] == 1
    assert ("Warning", "ImmutableFieldChanged") in events_for(cluster, "update-1")


def test_missed_events_are_caught_by_the_resync(cluster: EmulatedCluster, operator: OperatorProcess) -> None:
    """A status change that never reaches the watch (as with a dropped watch) is still picked up."""
    cluster.apply_job(named(SQUAD, "resync-1"), uid="uid-resync-1")
    cluster.wait(lambda: status(cluster, "resync-1").get("phase") == "Pending", what="Pending")

    async def silently_mark_running() -> None:  # changes the stored object without a watch event
        stored = cluster.emulator.objects[MPIJOBS, NS, "resync-1-squad"]
        stored.patch({"status": {"conditions": [{"type": "Running", "status": "True", "reason": "MPIJobRunning"}]}})

    cluster.call(silently_mark_running)
    cluster.wait(lambda: status(cluster, "resync-1").get("phase") == "Running", timeout=15, what="Running via resync")


def test_api_faults_are_retried_without_duplicates(cluster: EmulatedCluster, operator: OperatorProcess) -> None:
    """500 and 429 on status patches, and an existing MPIJob (409 on create), end in one MPIJob and a right status."""
    left = {"count": 3}

    def first_patches(request: kmock.Request) -> bool:
        if request.method == "PATCH" and "berttrainingjobs/faults-1" in str(request.url) and left["count"] > 0:
            left["count"] -= 1
            return True
        return False

    async def inject() -> None:
        cluster.emulator[first_patches] << kmock.KubernetesError(status=500, reason="InternalError", message="injected")

    cluster.call(inject)
    # An MPIJob left by an earlier operator life: the create answers 409 and it is adopted.
    cluster.leave_mpijob(NS, "faults-1", "squad", owner_uid="uid-faults-1")
    cluster.apply_job(named(SQUAD, "faults-1"), uid="uid-faults-1")
    cluster.set_mpijob_conditions(NS, "faults-1-squad", "Created", "Running")
    cluster.wait(lambda: status(cluster, "faults-1").get("phase") == "Running", what="Running despite faults")
    assert left["count"] < 3  # faults were served
    assert '"message": "api retry verb=patch code=500' in operator.output()
    assert [m["metadata"]["name"] for m in cluster.mpijobs(NS)].count("faults-1-squad") == 1


def test_a_foreign_mpijob_with_our_name_is_a_conflict(cluster: EmulatedCluster, operator: OperatorProcess) -> None:
    foreign = {"apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob",
               "metadata": {"name": "foreign-1-squad", "namespace": NS}, "spec": {"mpiReplicaSpecs": {}}}
    cluster.custom.create_namespaced_custom_object("kubeflow.org", "v2beta1", NS, "mpijobs", foreign)
    cluster.apply_job(named(SQUAD, "foreign-1"), uid="uid-foreign-1")
    cluster.wait(lambda: status(cluster, "foreign-1").get("phase") == "Failed", what="Failed on conflict")
    assert condition(status(cluster, "foreign-1"), "Failed")["reason"] == "MPIJobNameConflict"


def review_answer(asked: list[str], minted_for: str, pod: str, pod_uid: str, namespace: str = NS) -> dict[str, Any]:
    """A real API server's TokenReview verdict: authenticated only for an audience the token was minted for."""
    if minted_for not in asked:
        return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"audiences": asked},
                "status": {"authenticated": False, "error": "token audiences is invalid for the target audiences"}}
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": "t", "audiences": asked}, "status": {
        "authenticated": True, "audiences": [minted_for],
        "user": {"username": f"system:serviceaccount:{namespace}:default", "uid": "sa-uid",
                 "extra": {"authentication.kubernetes.io/pod-name": [pod], "authentication.kubernetes.io/pod-uid": [pod_uid]}}}}


def post_progress(operator: OperatorProcess, name: str, report: dict[str, Any], token: str = "t") -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{operator.progress_port}/progress/{NS}/{name}", data=json.dumps(report).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def token_reviews(emulated: EmulatedCluster) -> dict[str, str]:
    """The API server's TokenReview answers for the token of the pod named in the returned dict (its uid, and the
    audience it was minted for: by default that pod's job's, as the renderer mounts it)."""
    cluster = emulated
    verdict = {"pod": "", "uid": "", "audience": ""}

    def answer_review(request: kmock.Request) -> dict[str, Any]:
        # The emulator stores every created object; a real API server never persists TokenReviews.
        del cluster.emulator.objects["authentication.k8s.io/v1/tokenreviews", None, None]
        return review_answer(request.data["spec"]["audiences"], verdict["audience"], verdict["pod"], verdict["uid"])

    async def install() -> None:
        cluster.emulator["post", kmock.resource("authentication.k8s.io/v1/tokenreviews")] << answer_review

    cluster.call(install)
    return verdict


def test_progress_reaches_the_status_only_from_the_jobs_own_pods(
    cluster: EmulatedCluster, operator: OperatorProcess, token_reviews: dict[str, str]
) -> None:
    cluster.apply_job(named(TINY, "progress-1"), uid="uid-progress-1")
    cluster.wait(lambda: status(cluster, "progress-1").get("phase") == "Pending", what="Pending")
    cluster.run_pod(NS, "progress-1-phase1-worker-0", "progress-1", uid="pod-uid-1")
    verdict = token_reviews
    verdict.update(pod="progress-1-phase1-worker-0", uid="pod-uid-1", audience=f"bert-operator/{NS}/progress-1")
    report = {"stage": "phase1", "progress": {"step": 45, "totalSteps": 90, "loss": 7.25, "mlmAccuracy": 0.25,
                                              "nspAccuracy": 0.75, "sequencesPerSecond": 812.5, "etaSeconds": 12.5,
                                              "updatedAt": "2026-11-26T10:00:00Z"}}
    code, _ = post_progress(operator, "progress-1", report)
    assert code == 200
    progress = cluster.wait(lambda: status(cluster, "progress-1").get("progress"), what="progress")
    # Every field the trainer reports survives the API server's pruning (the status schema is the contract's).
    assert {k: progress[k] for k in report["progress"]} == report["progress"]
    assert progress["step"] == 45 and progress["loss"] == 7.25 and progress["stage"] == "phase1"
    assert progress["percent"] == 45  # half of phase 1, which is 90% of the steps
    assert condition(status(cluster, "progress-1"), "ProgressAvailable")["status"] == "True"

    results = {"stage": "phase1", "results": {"finalLoss": 6.5, "checkpoint": "s3://bert-demo/results/bert-tiny/phase1/ckpt-90"}}
    assert post_progress(operator, "progress-1", results)[0] == 200
    assert cluster.wait(lambda: status(cluster, "progress-1").get("results"), what="results")["finalLoss"] == 6.5
    # An evaluation of 0 batches is NaN, which the API server's decoder refuses: the figure is null (absent), and the
    # rest of the report is stored, not lost; the operator's gpuHours is not the report's to write.
    nan = {"stage": "phase1", "results": {"evalLoss": float("nan"), "evalBatches": 0, "gpuHours": 0}}
    assert post_progress(operator, "progress-1", nan)[0] == 200
    stored = cluster.wait(lambda: "evalBatches" in status(cluster, "progress-1")["results"] and status(cluster, "progress-1"),
                          what="results")["results"]
    assert "evalLoss" not in stored and "gpuHours" not in stored and stored["finalLoss"] == 6.5
    code, answer = post_progress(operator, "progress-1", {"stage": "phase2", "progress": {"step": 9, "totalSteps": 10}})
    assert code == 403 and "it is a pod of stage 'phase1'" in answer["message"]  # a phase-1 pod cannot report phase 2

    verdict["pod"] = "someone-else-worker-0"
    code, answer = post_progress(operator, "progress-1", report)
    assert code == 403 and "may not report" in answer["message"] and "no such pod" in answer["message"]
    verdict["pod"] = "progress-1-phase1-worker-0"
    verdict["uid"] = "uid-of-an-earlier-pod-of-that-name"
    code, answer = post_progress(operator, "progress-1", report)
    assert code == 403 and "another pod now" in answer["message"]
    verdict["uid"] = "pod-uid-1"
    code, answer = post_progress(operator, "progress-1", {"stage": 9, "progress": {"step": 1, "totalSteps": 2}})
    assert code == 400 and "stage: must be one of ['phase1', 'phase2']" in answer["message"]
    request = urllib.request.Request(f"http://127.0.0.1:{operator.progress_port}/progress/{NS}/progress-1", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 401


def test_a_pod_of_one_job_cannot_report_for_another_whose_name_it_starts_with(
    cluster: EmulatedCluster, operator: OperatorProcess, token_reviews: dict[str, str]
) -> None:
    """Pods of job `bert-large` are named `bert-large-...`, which starts with `bert-`: the old prefix check let them
    report for job `bert`. Their token's audience is bert-large's, and their label says bert-large: both refuse."""
    for name in ("bert", "bert-large"):
        cluster.apply_job(named(SQUAD, name), uid=f"uid-{name}")
        cluster.wait(lambda: status(cluster, name).get("phase") == "Pending", what=f"{name} Pending")
    cluster.run_pod(NS, "bert-large-squad-worker-0", "bert-large", uid="pod-uid-large")
    report = {"stage": "squad", "progress": {"step": 1, "totalSteps": 10}}
    token_reviews.update(pod="bert-large-squad-worker-0", uid="pod-uid-large", audience=f"bert-operator/{NS}/bert-large")
    code, answer = post_progress(operator, "bert", report)
    assert code == 401 and f"audience bert-operator/{NS}/bert" in answer["message"]
    token_reviews["audience"] = f"bert-operator/{NS}/bert"  # even a token of the right audience: the pod is not bert's
    code, answer = post_progress(operator, "bert", report)
    assert code == 403 and "not a pod of that job" in answer["message"]
    assert "progress" not in status(cluster, "bert")
    token_reviews["audience"] = f"bert-operator/{NS}/bert-large"
    assert post_progress(operator, "bert-large", report)[0] == 200


def test_the_trainers_reporter_delivers_through_the_rendered_environment(
    cluster: EmulatedCluster, operator: OperatorProcess, token_reviews: dict[str, str], tmp_path: Path
) -> None:
    """bert_trainer's sender, configured only by the variables the MPIJob exports, lands progress and results on the CR."""
    from bert_trainer.progress_push import ProgressPusher

    cluster.apply_job(named(SQUAD, "push-1"), uid="uid-push-1")
    mpijob = cluster.wait(lambda: next((m for m in cluster.mpijobs(NS) if m["metadata"]["name"] == "push-1-squad"), None), what="MPIJob")
    launcher = mpijob["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in launcher["env"] if "value" in e}
    assert env["BERTJOB_PROGRESS_URL"] == "http://bert-operator.bert-operator.svc:8081/progress/ml-training/push-1"
    assert "BERTJOB_TOKEN_FILE" in launcher["command"]  # exported to every rank
    token = tmp_path / "token"
    token.write_text("projected-token\n")
    env["BERTJOB_PROGRESS_URL"] = env["BERTJOB_PROGRESS_URL"].replace("http://bert-operator.bert-operator.svc:8081", f"http://127.0.0.1:{operator.progress_port}")
    env["BERTJOB_TOKEN_FILE"] = str(token)
    pusher = ProgressPusher.from_env(env)
    cluster.run_pod(NS, "push-1-squad-worker-0", "push-1", uid="pod-uid-push-1")
    token_reviews.update(pod="push-1-squad-worker-0", uid="pod-uid-push-1", audience=f"bert-operator/{NS}/push-1")
    assert pusher.progress({"step": 30, "totalSteps": 120, "loss": 1.5, "updatedAt": "2026-11-26T10:00:00Z"})
    assert not pusher.progress({"step": 31, "totalSteps": 120})  # rate-limited
    assert pusher.results({"exactMatch": 84.1, "f1": 90.9})
    final = cluster.wait(lambda: status(cluster, "push-1").get("results") and status(cluster, "push-1"), what="results")
    assert final["progress"]["percent"] == 25 and final["results"]["f1"] == 90.9
    token.unlink()
    assert not pusher.progress({"step": 40, "totalSteps": 120}, final=True)  # unreadable token: dropped, no exception


def tls_files(folder: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1 it signed, as a kubernetes.io/tls Secret holds them."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject: str, key: Any, issuer: str, signer: Any, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                            critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("test-ca", ca_key, "test-ca", ca_key, ca=True)
    server = certificate("bert-operator", server_key, "test-ca", ca_key, ca=False)
    pem = serialization.Encoding.PEM
    (folder / "ca.crt").write_bytes(ca.public_bytes(pem))
    (folder / "tls.crt").write_bytes(server.public_bytes(pem))
    (folder / "tls.key").write_bytes(server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()))
    return folder


def test_progress_over_https_is_verified_with_the_ca_the_mpijob_carries(
    cluster: EmulatedCluster, operator: OperatorProcess, token_reviews: dict[str, str], tmp_path: Path
) -> None:
    from bert_trainer.progress_push import ProgressPusher

    certs = tls_files(tmp_path)
    operator.stop()  # this test's operator serves the endpoint over TLS
    secure = OperatorProcess(cluster)
    secure.extra = ("--progress-cert-dir", str(certs), "--progress-url", f"https://127.0.0.1:{secure.progress_port}")
    try:
        with secure:
            cluster.apply_job(named(SQUAD, "tls-1"), uid="uid-tls-1")
            mpijob = cluster.wait(lambda: next((m for m in cluster.mpijobs(NS) if m["metadata"]["name"] == "tls-1-squad"), None),
                                  what="MPIJob")
            launcher = mpijob["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
            env = {e["name"]: e["value"] for e in launcher["env"] if "value" in e}
            assert env["BERTJOB_PROGRESS_URL"].startswith(f"https://127.0.0.1:{secure.progress_port}/progress/")
            assert "BERTJOB_PROGRESS_CA" in launcher["command"]  # exported to every rank, one line
            token = tmp_path / "token"
            token.write_text("projected-token\n")
            env["BERTJOB_TOKEN_FILE"] = str(token)
            cluster.run_pod(NS, "tls-1-squad-worker-0", "tls-1", uid="pod-uid-tls-1")
            token_reviews.update(pod="tls-1-squad-worker-0", uid="pod-uid-tls-1", audience=f"bert-operator/{NS}/tls-1")
            unverified = ProgressPusher.from_env({k: v for k, v in env.items() if k != "BERTJOB_PROGRESS_CA"})
            assert not unverified.progress({"step": 1, "totalSteps": 10}, final=True)  # the system CAs do not know it
            assert ProgressPusher.from_env(env).progress({"step": 5, "totalSteps": 10}, final=True)
            assert cluster.wait(lambda: status(cluster, "tls-1").get("progress"), what="progress")["step"] == 5
            plain = env["BERTJOB_PROGRESS_URL"].replace("https://", "http://")
            assert not ProgressPusher(url=plain, stage="squad", token_file=str(token)).progress({"step": 6, "totalSteps": 10},
                                                                                                 final=True)
    finally:
        operator.start()


def test_restarts_never_duplicate_mpijobs(cluster: EmulatedCluster, operator: OperatorProcess, tmp_path: Path) -> None:
    """Jobs applied while the operator is down, and restarts (TERM and KILL), leave exactly one MPIJob per stage."""
    operator.stop()
    names = [f"restart-{i}" for i in range(5)]
    for i, name in enumerate(names):
        cluster.apply_job(named(SQUAD, name, namespace="restarts"), uid=f"uid-{name}")
    for sig in (signal.SIGKILL, signal.SIGTERM):
        second = OperatorProcess(cluster).start()
        cluster.wait(lambda: len([m for m in cluster.mpijobs("restarts")]) == len(names), what="all MPIJobs")
        second.stop(sig)
    third = OperatorProcess(cluster).start()
    try:
        cluster.wait(lambda: all(status(cluster, n, "restarts").get("phase") == "Pending" for n in names), what="statuses")
        created = sorted(m["metadata"]["name"] for m in cluster.mpijobs("restarts"))
        assert created == sorted(f"{n}-squad" for n in names)
    finally:
        third.stop()
        operator.start()


def failing(cluster: EmulatedCluster, method: str, url_part: str) -> dict[str, bool]:
    """Answer 500 to matching requests while the returned switch is on.

    kmock applies a write before a reaction answers, so the state may change while the client sees a 500,
    as with an answer lost on the way back: the harder case for the operator.
    """
    switch = {"on": True}

    def matches(request: kmock.Request) -> bool:
        return switch["on"] and request.method == method and url_part in str(request.url)

    async def install() -> None:
        cluster.emulator[matches] << kmock.KubernetesError(status=500, reason="InternalError", message="injected")

    cluster.call(install)
    return switch


def test_a_job_whose_pods_cannot_be_scheduled_says_why(cluster: EmulatedCluster, operator: OperatorProcess) -> None:
    """The scheduler's FailedScheduling Event on a worker pod (the MPIJob gets no condition) reaches the job."""
    cluster.apply_job(named(SQUAD, "unschedulable-1"), uid="uid-unschedulable-1")
    cluster.wait(lambda: status(cluster, "unschedulable-1").get("phase") == "Pending", what="Pending")
    cluster.set_mpijob_conditions(NS, "unschedulable-1-squad", "Created")
    cluster.run_pod(NS, "unschedulable-1-squad-worker-0", "unschedulable-1", uid="uid-unschedulable-1-worker-0")
    cluster.post_warning(NS, "Pod", "unschedulable-1-squad-worker-0", "FailedScheduling",
                         "0/4 nodes are available: 4 Insufficient nvidia.com/gpu. preemption: 0/4 nodes are available.")
    def waiting_created() -> dict[str, Any] | None:
        current = status(cluster, "unschedulable-1")
        ready = next((c for c in current.get("conditions", []) if c["type"] == "Ready" and c["reason"] == "PodsPending"), None)
        return ready if current.get("phase") == "Created" else None

    ready = cluster.wait(waiting_created, what="Created with Ready=False PodsPending")
    assert ready["status"] == "False" and ready["message"].startswith(
        "pod unschedulable-1-squad-worker-0: FailedScheduling: 0/4 nodes are available: 4 Insufficient nvidia.com/gpu.")


def test_a_job_with_thousands_of_field_errors_gets_a_failed_status(cluster: EmulatedCluster, operator: OperatorProcess) -> None:
    """8,000 reserved pod-label keys: every error quoted twice made a status PATCH the API server answers 413."""
    document = named(SQUAD, "errors-1")
    document["spec"]["resources"]["podTemplate"] = {"labels": {f"bertoperator.io/k{i:05d}": "x" for i in range(8000)}}
    cluster.apply_job(document, uid="uid-errors-1")
    cluster.wait(lambda: status(cluster, "errors-1").get("phase") == "Failed", what="Failed")
    assert condition(status(cluster, "errors-1"), "Ready")["reason"] == "InvalidSpec"
    assert condition(status(cluster, "errors-1"), "Valid")["message"].endswith("(and 7990 more errors)")


def test_a_namespace_being_deleted_is_no_error(cluster: EmulatedCluster, operator: OperatorProcess) -> None:
    """Once the namespace is terminating the API server refuses every create (403 NamespaceTerminating): the Event of
    the next phase change is dropped quietly, not logged as a failure with a traceback."""
    cluster.apply_job(named(SQUAD, "doomed-1", namespace="doomed"), uid="uid-doomed-1")
    cluster.wait(lambda: status(cluster, "doomed-1", "doomed").get("phase") == "Pending", what="Pending")
    cluster.strict.terminate("doomed")
    cluster.set_mpijob_conditions("doomed", "doomed-1-squad", "Created", "Running")
    cluster.wait(lambda: status(cluster, "doomed-1", "doomed").get("phase") == "Running", what="Running")
    cluster.wait(lambda: "status job=doomed/doomed-1 phase=Running" in operator.output(), what="the status write logged")
    assert "event post failed" not in operator.output() and "event job=doomed/doomed-1 type=Normal reason=Running" not in operator.output()


def answering(cluster: EmulatedCluster, method: str, url_part: str, status: int, message: str) -> None:
    """Answer every matching request with an API error `status` carrying `message`, as a real API server would."""
    def matches(request: kmock.Request) -> bool:
        return request.method == method and url_part in str(request.url)

    async def install() -> None:
        cluster.emulator[matches] << kmock.KubernetesError(status=status, reason="Invalid", message=message)

    cluster.call(install)


def test_an_mpijob_the_api_server_refuses_fails_the_job_with_its_message(cluster: EmulatedCluster,
                                                                         operator: OperatorProcess) -> None:
    refusal = 'MPIJob.kubeflow.org "refused-1-squad" is invalid: spec.runPolicy.schedulingPolicy: Invalid value'
    answering(cluster, "POST", "namespaces/refusing/mpijobs", 422, refusal)
    cluster.apply_job(named(SQUAD, "refused-1", namespace="refusing"), uid="uid-refused-1")
    cluster.wait(lambda: status(cluster, "refused-1", "refusing").get("phase") == "Failed", what="Failed")
    failed = next(c for c in status(cluster, "refused-1", "refusing")["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "MPIJobRefused" and refusal in failed["message"] and "(422)" in failed["message"]
    cluster.wait(lambda: events_for(cluster, "refused-1"), what="the Event")  # posted once the status is written
    assert events_for(cluster, "refused-1") == [("Warning", "Failed")]


def test_a_conflict_whose_object_cannot_be_read_is_retried_a_bounded_number_of_times(cluster: EmulatedCluster) -> None:
    from bert_operator.kube import ConflictUnresolved, KubeApi

    answering(cluster, "POST", "namespaces/ghost/mpijobs", 409, "already exists")
    answering(cluster, "GET", "namespaces/ghost/mpijobs/ghost-squad", 404, "not found")  # deleted in between, each time
    api = KubeApi(cluster.client, attempts=4, backoff=0.001)
    body = {"apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob", "metadata": {"name": "ghost-squad", "namespace": "ghost"},
            "spec": {"mpiReplicaSpecs": {}}}
    with pytest.raises(ConflictUnresolved, match="answered 409 .* but reading it answered 404"):
        api.create_or_adopt_mpijob(body)
    posts = [r for r in cluster.requests() if r[0] == "POST" and r[1] == "mpijobs" and r[4] == "ghost-squad"]
    gets = [r for r in cluster.requests() if r[0] == "GET" and r[1] == "mpijobs" and r[4] == "ghost-squad"]
    assert len(posts) == 4 and len(gets) == 4


@pytest.mark.parametrize("point", ["after MPIJob create, before status", "after phase 1 succeeded, before phase 2 create"])
def test_kill_mid_flow_then_restart_is_consistent(cluster: EmulatedCluster, operator: OperatorProcess, point: str) -> None:
    operator.stop()
    mid = OperatorProcess(cluster).start()
    switch = {"on": False}
    try:
        try:
            if point.startswith("after MPIJob"):
                name, stage = "midflow-1", "squad"
                switch = failing(cluster, "PATCH", "berttrainingjobs/midflow-1/status")
                cluster.apply_job(named(SQUAD, name, namespace="midflow"), uid=f"uid-{name}")
                cluster.wait(lambda: any(m["metadata"]["name"] == f"{name}-squad" for m in cluster.mpijobs("midflow")),
                             what="MPIJob")
            else:
                name, stage = "midflow-2", "phase2"
                cluster.apply_job(named(TINY, name, namespace="midflow"), uid=f"uid-{name}")
                cluster.wait(lambda: any(m["metadata"]["name"] == f"{name}-phase1" for m in cluster.mpijobs("midflow")),
                             what="phase1")
                cluster.wait(lambda: status(cluster, name, "midflow").get("stages"), what="status")
                switch = failing(cluster, "POST", "namespaces/midflow/mpijobs")
                cluster.set_mpijob_conditions("midflow", f"{name}-phase1", "Created", "Running", "Succeeded")
                cluster.wait(lambda: "api retry verb=create code=500" in mid.output(), what="failing phase-2 create")
            mid.stop(signal.SIGKILL)
        finally:
            switch["on"] = False
            mid.stop(signal.SIGKILL)  # also when a wait above timed out: no operator process left behind
        after = OperatorProcess(cluster).start()
        try:
            cluster.wait(lambda: status(cluster, name, "midflow").get("currentStage") == stage, what=f"{stage} in status")
            names = sorted(m["metadata"]["name"] for m in cluster.mpijobs("midflow") if m["metadata"]["name"].startswith(name))
            # Exactly the stages reached so far: nothing skipped ahead, nothing made under another name.
            assert names == ([f"{name}-squad"] if stage == "squad" else [f"{name}-phase1", f"{name}-phase2"])
        finally:
            after.stop()
    finally:
        operator.start()  # the module's operator again, for the tests after this one, whether this one passed or not


def test_liveness_and_prometheus_metrics(cluster: EmulatedCluster, operator: OperatorProcess) -> None:
    from tests.conftest import free_port

    operator.stop()  # this test's operator alone creates the MPIJob it counts

    liveness, metrics = free_port(), free_port()
    # Cluster-wide: namespaced mode makes kopf list /api/v1/namespaces, a path kmock 0.8 fails to parse.
    with OperatorProcess(cluster, "--liveness-port", str(liveness), "--metrics-port", str(metrics)):
        cluster.apply_job(named(SQUAD, "metrics-1", namespace="metrics-ns"), uid="uid-metrics-1")
        cluster.wait(lambda: status(cluster, "metrics-1", "metrics-ns").get("phase") == "Pending", what="Pending")
        health = cluster.wait(lambda: urllib.request.urlopen(f"http://127.0.0.1:{liveness}/healthz", timeout=5).status, what="healthz")
        assert health == 200

        def scrape() -> str:
            return urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()

        text = cluster.wait(lambda: (t := scrape()) and 'bertoperator_jobs{phase="Pending"}' in t and t, what="jobs gauge after a resync")
        assert "bertoperator_mpijobs_created_total 1.0" in text
        assert 'bertoperator_reconcile_duration_seconds_count' in text
        assert 'bertoperator_api_requests_total{verb="create"}' in text
    operator.start()

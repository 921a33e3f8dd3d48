"""The real operator process with its webhook on, against the API emulator: what it may do and what it admits.

One operator (webhook served with the certificate pair the chart generates for
`webhook.certificates=helm`) runs a scenario that touches every code path
that calls the API; its recorded requests are the used (group, resource, verb)
set, which must equal what the chart's ClusterRole grants.
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import socket
import ssl
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import kmock
import pytest
import yaml

from tests.chart.namespaces_proxy import NamespacesProxy
from tests.chart.render import kind, objects, one
from tests.conftest import REPO, free_port
from tests.operator.cluster import EmulatedCluster, OperatorProcess
from tests.operator.kueue_shim import KueueShim

SQUAD = yaml.safe_load((REPO / "examples" / "squad-v1.1.yaml").read_text())
TINY = yaml.safe_load((REPO / "examples" / "tiny-pretrain-s3.yaml").read_text())
SERVE = yaml.safe_load((REPO / "examples" / "serve-mrpc.yaml").read_text())
SWEEP = yaml.safe_load((REPO / "examples" / "sweep-mrpc.yaml").read_text())
#: The pod whose token the TokenReview answers authenticate (the scenario's reporting pod of the moment).
REVIEWED = {"pod": "access-1-phase1-worker-0", "uid": "pod-uid-access-1"}
NS = "rbac-ns"
#: The namespaces the API serves, with their labels (a policy selects by them).
NAMESPACES = {NS: {"team": "rbac"}, "elsewhere": {}}
WEBHOOK_HOST = "bert-operator.bert-operator.svc"  # the Service name the ValidatingWebhookConfiguration calls
OPERATOR_AGENTS = ("bert-operator/", "kopf/")  # the reconciler's client and kopf's watches


def named(document: dict[str, Any], name: str) -> dict[str, Any]:
    copied = copy.deepcopy(document)
    copied["metadata"] = {"name": name, "namespace": NS}
    return copied


class Served:
    def __init__(self, cluster: EmulatedCluster, operator: OperatorProcess, port: int, ca: Path,
                 proxy: NamespacesProxy) -> None:
        self.cluster, self.operator, self.port, self.ca, self.proxy = cluster, operator, port, ca, proxy

    def review(self, job: dict[str, Any], operation: str = "CREATE", old: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST an AdmissionReview as the API server does: HTTPS, the server's certificate checked against the
        chart's caBundle for the Service's DNS name."""
        uid = str(uuid.uuid4())
        resource = {"group": "bertoperator.io", "version": "v1alpha1", "resource": "berttrainingjobs"}
        gvk = {"group": "bertoperator.io", "version": "v1alpha1", "kind": "BertTrainingJob"}
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": uid, "kind": gvk, "resource": resource, "requestKind": gvk, "requestResource": resource,
            "name": job["metadata"]["name"], "namespace": job["metadata"]["namespace"], "operation": operation,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": job, "oldObject": old, "dryRun": False}}
        context = ssl.create_default_context(cafile=str(self.ca))
        connection = _PinnedHostConnection("127.0.0.1", self.port, context=context, timeout=10)
        try:
            connection.request("POST", "/validate-berttrainingjob", body=json.dumps(review),
                               headers={"Content-Type": "application/json"})
            answer = connection.getresponse()
            assert answer.status == 200, answer.read()
            body = json.loads(answer.read())
        finally:
            connection.close()
        assert body["kind"] == "AdmissionReview" and body["response"]["uid"] == uid
        return body["response"]


class _PinnedHostConnection(http.client.HTTPSConnection):
    """Connects to 127.0.0.1 but checks the certificate for the webhook Service's DNS name."""

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=WEBHOOK_HOST)


def chart_certificates(directory: Path) -> Path:
    """tls.crt/tls.key from the chart's Secret (webhook.certificates=helm) into `directory`; returns the CA file
    written from the webhook configuration's caBundle."""
    rendered = objects({"webhook": {"enabled": True, "certificates": "helm"}})
    [secret] = kind(rendered, "Secret")
    [configuration] = kind(rendered, "ValidatingWebhookConfiguration")
    for key in ("tls.crt", "tls.key"):
        (directory / key).write_bytes(base64.b64decode(secret["data"][key]))
    ca = directory / "ca.pem"
    ca.write_bytes(base64.b64decode(configuration["webhooks"][0]["clientConfig"]["caBundle"]))
    return ca


def prepare(cluster: EmulatedCluster) -> None:
    """What a real API server has that the emulator needs told: CRDs as a resource, TokenReview answers."""
    async def declare() -> None:
        # A real API server serves CRDs; kopf lists and watches them to notice resources installed later.
        cluster.emulator.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = kmock.ResourceInfo(
            kind="CustomResourceDefinition", singular="customresourcedefinition", namespaced=False,
            verbs={"list", "watch", "get", "create"})

        def answer_review(request: kmock.Request) -> dict[str, Any]:
            del cluster.emulator.objects["authentication.k8s.io/v1/tokenreviews", None, None]  # never stored by a real API server
            return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                    "spec": {"token": "t", "audiences": request.data["spec"]["audiences"]}, "status": {
                        "authenticated": True, "audiences": request.data["spec"]["audiences"],
                        "user": {"username": f"system:serviceaccount:{NS}:default",
                                 "extra": {"authentication.kubernetes.io/pod-name": [REVIEWED["pod"]],
                                           "authentication.kubernetes.io/pod-uid": [REVIEWED["uid"]]}}}}

        cluster.emulator["post", kmock.resource("authentication.k8s.io/v1/tokenreviews")] << answer_review

    cluster.call(declare)
    cluster.kueue = KueueShim(cluster, NS)  # Kueue's Workloads as a resource


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Cluster-wide operator with the webhook on."""
    workdir = tmp_path_factory.mktemp("access")
    certs = workdir / "certs"
    certs.mkdir()
    ca = chart_certificates(certs)
    with EmulatedCluster(workdir) as cluster:
        prepare(cluster)
        # kopf lists and watches namespaces (the labels policies select by), which the emulator cannot serve.
        proxy = NamespacesProxy(cluster.url, NAMESPACES)
        cluster.connect(cluster.call(proxy.start))
        port = free_port()
        operator = OperatorProcess(cluster, "--webhook-port", str(port), "--webhook-cert-dir", str(certs), resync_seconds=1.0)
        try:
            with operator:
                yield Served(cluster, operator, port, ca, proxy)
        finally:
            cluster.call(proxy.stop)


def _wait_for_webhook(served: Served) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", served.port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"webhook never listened; operator output:\n{served.operator.output()}")
            time.sleep(0.1)


def cli_lines(tmp_path: Path, document: dict[str, Any]) -> list[str]:
    """What `bertjob validate` prints for `document`, without the leading file name."""
    import contextlib
    import io

    from bert_operator.cli import main

    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(document))
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert main(["validate", str(path)]) == 2
    return [line.removeprefix(f"{path}: ") for line in stderr.getvalue().splitlines()]


def bad_job() -> dict[str, Any]:
    bad = named(TINY, "bad-1")
    bad["spec"]["resources"]["gpusPerWorker"] = -1
    bad["spec"]["precision"] = "fp8"
    return bad


def test_webhook_over_https_admits_a_good_job_and_rejects_a_bad_one_with_the_clis_messages(served: Served, tmp_path: Path) -> None:
    _wait_for_webhook(served)
    good = served.review(named(SQUAD, "good-1"))
    assert good["allowed"] is True and "status" not in good

    bad = bad_job()
    expected = cli_lines(tmp_path, bad)
    assert len(expected) >= 2 and any("spec.resources.gpusPerWorker: must be >= 0, got -1" == line for line in expected)
    answer = served.review(bad)
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 422
    assert answer["status"]["message"].splitlines() == expected

    # An update to an invalid spec is refused the same way.
    changed = named(SQUAD, "good-1")
    changed["spec"]["task"]["squad"]["docStride"] = 4096
    update = served.review(changed, operation="UPDATE", old=named(SQUAD, "good-1"))
    assert update["allowed"] is False and update["status"]["message"].splitlines() == cli_lines(tmp_path, changed)
    # A user's invalid apply is logged as information, not as an operator error.
    log = [json.loads(line) for line in served.operator.output().splitlines() if line.startswith("{")]
    assert [e["message"] for e in log if "admission refused" in e["message"]] == [
        "admission refused job=rbac-ns/bad-1 problems=2", "admission refused job=rbac-ns/good-1 problems=1"]
    assert not [e for e in log if e.get("severity") == "error"], served.operator.output()


def used_verbs(requests: list[kmock.Request]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource[/subresource], verb) of each resource request, as RBAC names them."""
    used = set()
    for request in requests:
        method = str(request.method).upper().rsplit(".", 1)[-1]
        watch = str((request.params or {}).get("watch", "")).lower() in ("true", "1")
        verb = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}.get(method)
        if method == "GET":
            verb = "watch" if watch else "get" if request.name else "list"
        resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
        used.add((request.resource.group or "", resource, verb))
    return used


def granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in rules for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def give_uid(cluster: EmulatedCluster, mpijob: str) -> None:
    """The uid a real API server gives every object it creates (the emulator gives none; Kueue and restarts key on it)."""
    cluster.wait(lambda: any(m["metadata"]["name"] == mpijob for m in cluster.mpijobs(NS)), what=mpijob)
    cluster.custom.patch_namespaced_custom_object("kubeflow.org", "v2beta1", NS, "mpijobs", mpijob,
                                                  {"metadata": {"uid": f"uid-{mpijob}"}})


def exercise(cluster: EmulatedCluster, operator: OperatorProcess) -> list[kmock.Request]:
    """Every path of the operator that calls the API; returns the requests it sent (discovery excluded)."""
    status = lambda name: cluster.job(NS, name).get("status") or {}  # noqa: E731
    REVIEWED.update(pod="access-1-phase1-worker-0", uid="pod-uid-access-1")
    # An MPIJob left by an earlier operator life (create answers 409; the operator reads it and adopts it).
    cluster.leave_mpijob(NS, "adopt-1", "squad", owner_uid="uid-adopt-1")
    cluster.apply_job(named(SQUAD, "adopt-1"), uid="uid-adopt-1")
    # An MPIJob naming a job the operator has not seen: it reads that job from the API.
    cluster.leave_mpijob(NS, "ghost-1", "squad", owner_uid=None)
    # A two-phase job through to its second MPIJob, with progress (TokenReview) and a suspend toggle.
    cluster.apply_job(named(TINY, "access-1"), uid="uid-access-1")
    cluster.wait(lambda: status("access-1").get("phase") == "Pending", what="Pending")
    cluster.set_mpijob_conditions(NS, "access-1-phase1", "Created")  # Created, pods not running: Warnings are read
    cluster.wait(lambda: status("access-1").get("phase") == "Created", what="Created")
    cluster.set_mpijob_conditions(NS, "access-1-phase1", "Created", "Running")
    cluster.wait(lambda: status("access-1").get("phase") == "Running", what="Running")
    cluster.run_pod(NS, "access-1-phase1-worker-0", "access-1", uid="pod-uid-access-1")
    report = {"stage": "phase1", "progress": {"step": 5, "totalSteps": 90}}
    request = urllib.request.Request(f"http://127.0.0.1:{operator.progress_port}/progress/{NS}/access-1",
                                     data=json.dumps(report).encode(), method="POST",
                                     headers={"Authorization": "Bearer t", "Content-Type": "application/json"})
    assert urllib.request.urlopen(request, timeout=10).status == 200
    cluster.set_mpijob_conditions(NS, "access-1-phase1", "Created", "Running", "Succeeded")
    cluster.wait(lambda: any(m["metadata"]["name"] == "access-1-phase2" for m in cluster.mpijobs(NS)), what="phase 2")
    patch = {"metadata": {"generation": 2}, "spec": {"runPolicy": {"suspend": True}}}
    cluster.custom.patch_namespaced_custom_object("bertoperator.io", "v1alpha1", NS, "berttrainingjobs", "access-1", patch)
    cluster.wait(lambda: next(m for m in cluster.mpijobs(NS) if m["metadata"]["name"] == "access-1-phase2")["spec"]["runPolicy"].get("suspend"),
                 what="suspended MPIJob")
    # A queued job: its Workload read while Kueue holds it, deactivated when the user suspends it.
    cluster.apply_job(named({**SQUAD, "spec": {**SQUAD["spec"], "queueName": "team-a"}}, "queued-1"), uid="uid-queued-1")
    cluster.wait(lambda: status("queued-1").get("phase") == "Queued", what="Queued")
    give_uid(cluster, "queued-1-squad")
    cluster.kueue.pending("queued-1-squad", "no quota")
    patch = {"metadata": {"generation": 2}, "spec": {"runPolicy": {"suspend": True}}}
    cluster.custom.patch_namespaced_custom_object("bertoperator.io", "v1alpha1", NS, "berttrainingjobs", "queued-1", patch)
    cluster.wait(lambda: cluster.kueue.workload("queued-1-squad")["spec"]["active"] is False, what="inactive Workload")
    # A stage whose worker was evicted: its pods listed, its MPIJob deleted for a restart.
    cluster.apply_job(named(SQUAD, "evict-1"), uid="uid-evict-1")
    cluster.wait(lambda: status("evict-1").get("phase") == "Pending", what="Pending")
    give_uid(cluster, "evict-1-squad")
    cluster.custom.patch_namespaced_custom_object_status("kubeflow.org", "v2beta1", NS, "mpijobs", "evict-1-squad", {
        "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "MPIJobEvicted", "message": "1/1 workers are evicted"}]}})
    cluster.wait(lambda: (status("evict-1").get("stages") or [{}])[0].get("restarts") == 1, what="a restart")
    # A served job: its InferenceService made once it succeeded (and watched), patched when spec.serve changes,
    # deleted when it is removed.
    cluster.apply_job(named(SERVE, "serve-1"), uid="uid-serve-1")
    cluster.wait(lambda: status("serve-1").get("phase") == "Pending", what="Pending")
    cluster.set_mpijob_conditions(NS, "serve-1-glue", "Created", "Running", "Succeeded")
    cluster.wait(lambda: cluster.inference_services(NS), what="the InferenceService")
    serve = {"metadata": {"generation": 2}, "spec": {"serve": {"replicas": 2, "minReplicas": None, "maxReplicas": None}}}
    cluster.custom.patch_namespaced_custom_object("bertoperator.io", "v1alpha1", NS, "berttrainingjobs", "serve-1", serve)
    cluster.wait(lambda: cluster.inference_services(NS)[0]["spec"]["predictor"]["minReplicas"] == 2, what="patched")
    unserve = {"metadata": {"generation": 3}, "spec": {"serve": None}}
    cluster.custom.patch_namespaced_custom_object("bertoperator.io", "v1alpha1", NS, "berttrainingjobs", "serve-1", unserve)
    cluster.wait(lambda: cluster.inference_services(NS) == [], what="the InferenceService deleted")
    # A sweep that keeps only its best trial's checkpoints: its cleanup Job made once it succeeded, then read.
    sweep = named(SWEEP, "sweep-1")
    sweep["spec"]["task"]["glue"]["sweep"] = {"learningRates": [5e-5, 2e-5], "maxParallel": 2,
                                              "keepTrialCheckpoints": False}
    cluster.apply_job(sweep, uid="uid-sweep-1")
    cluster.wait(lambda: len([m for m in cluster.mpijobs(NS) if m["metadata"]["name"].startswith("sweep-1-")]) == 2,
                 what="two trials")
    cluster.run_pod(NS, "sweep-1-t1-worker-0", "sweep-1", uid="pod-uid-sweep-1", stage="t1")
    REVIEWED.update(pod="sweep-1-t1-worker-0", uid="pod-uid-sweep-1")
    report = {"stage": "t1", "results": {"task": "MRPC", "dev": {"accuracy": 0.8, "f1": 0.85}}}
    request = urllib.request.Request(f"http://127.0.0.1:{operator.progress_port}/progress/{NS}/sweep-1",
                                     data=json.dumps(report).encode(), method="POST",
                                     headers={"Authorization": "Bearer t", "Content-Type": "application/json"})
    assert urllib.request.urlopen(request, timeout=10).status == 200
    for trial in ("sweep-1-t0", "sweep-1-t1"):
        cluster.set_mpijob_conditions(NS, trial, "Created", "Running", "Succeeded")
    cluster.wait(lambda: (status("sweep-1").get("trialCleanup") or {}).get("phase") == "Running", what="the cleanup Job")
    # A policy (read by the operator's watch and its first list) whose status the resync writes; it selects no
    # namespace here, so the jobs above are not changed by it.
    cluster.custom.create_cluster_custom_object("bertoperator.io", "v1alpha1", "berttrainingpolicies", {
        "apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingPolicy", "metadata": {"name": "gold-teams"},
        "spec": {"namespaceSelector": {"matchLabels": {"tier": "gold"}}, "limits": {"maxGpusPerJob": 64}}})
    cluster.wait(lambda: (cluster.custom.get_cluster_custom_object("bertoperator.io", "v1alpha1", "berttrainingpolicies",
                                                                   "gold-teams").get("status") or {}).get("conditions"),
                 what="the policy's status")
    # An invalid job (status and a Warning Event, no MPIJob), and a resync over all of them.
    cluster.apply_job(bad_job(), uid="uid-bad-1")
    cluster.wait(lambda: status("bad-1").get("phase") == "Failed", what="Failed")
    cluster.wait(lambda: status("adopt-1").get("phase") == "Pending", what="adopted")

    async def recorded() -> list[kmock.Request]:
        return list(cluster.emulator._requests)

    cluster.wait(lambda: any(r.name == "ghost-1" and r.resource and r.resource.plural == "berttrainingjobs"
                             for r in cluster.call(recorded)), what="the operator reading the unseen job")
    # Syncs of adopt-1 (in flight): at least two of them resyncs, one run through whole (it reads every job and
    # writes the policy's status) since the mark.
    cluster.wait_syncs("adopt-1-squad", 3)

    requests = [r for r in cluster.call(recorded) if str((r.headers or {}).get("User-Agent", "")).startswith(OPERATOR_AGENTS)]
    discovery = [r for r in requests if r.resource is None or not r.resource.plural]
    assert all(r.url.path in ("/api", "/apis", "/api/v1") or r.url.path.startswith("/apis/") for r in discovery)  # non-resource: no RBAC
    return [r for r in requests if r not in discovery]


#: Paths the scenario must reach, or the comparison below would prove little.
EXERCISED = {("authentication.k8s.io", "tokenreviews", "create"), ("kubeflow.org", "mpijobs", "patch"),
             ("kubeflow.org", "mpijobs", "get"), ("bertoperator.io", "berttrainingjobs", "get"), ("", "events", "create"),
             ("", "pods", "get"), ("", "events", "list"), ("", "pods", "list"), ("kubeflow.org", "mpijobs", "delete"),
             ("kueue.x-k8s.io", "workloads", "list"), ("kueue.x-k8s.io", "workloads", "patch"),
             ("bertoperator.io", "berttrainingpolicies", "list"), ("bertoperator.io", "berttrainingpolicies", "watch"),
             ("bertoperator.io", "berttrainingpolicies/status", "patch"), ("", "namespaces", "list"),
             ("", "namespaces", "watch"), ("serving.kserve.io", "inferenceservices", "create"),
             ("serving.kserve.io", "inferenceservices", "get"), ("serving.kserve.io", "inferenceservices", "patch"),
             ("serving.kserve.io", "inferenceservices", "delete"), ("serving.kserve.io", "inferenceservices", "watch"),
             ("batch", "jobs", "create"), ("batch", "jobs", "get")}


def test_clusterrole_grants_exactly_the_verbs_the_operator_used(served: Served) -> None:
    used = used_verbs(exercise(served.cluster, served.operator)) | {
        ("", "namespaces", verb) for agent, verb in served.proxy.answered if agent.startswith(OPERATOR_AGENTS)}
    role = one(objects(), "ClusterRole")
    rules = granted(role["rules"])
    assert used - rules == set(), f"used but not granted: {sorted(used - rules)}"
    assert rules - used == set(), f"granted but never used: {sorted(rules - used)}"
    assert EXERCISED <= used


def test_namespaced_mode_uses_only_what_its_roles_grant(tmp_path_factory: pytest.TempPathFactory) -> None:
    """`bertjob operator -n rbac-ns`: kopf lists and watches namespaces (served by a proxy, as the emulator cannot),
    every namespaced request stays in the watched namespace, and the ClusterRole plus that namespace's Role grant
    exactly what was used."""
    with EmulatedCluster(tmp_path_factory.mktemp("namespaced")) as cluster:
        prepare(cluster)
        proxy = NamespacesProxy(cluster.url, NAMESPACES)
        emulator_url = cluster.url

        async def start() -> str:
            return await proxy.start()

        cluster.connect(cluster.call(start))
        try:
            with OperatorProcess(cluster, "-n", NS, resync_seconds=1.0) as operator:
                requests = exercise(cluster, operator)
        finally:
            cluster.call(proxy.stop)
            cluster.url = emulator_url
    outside = [f"{r.method} {r.url.path}" for r in requests if r.namespace not in (NS, None)]
    assert outside == []
    cluster_wide = {f"{r.method} {r.url.path}" for r in requests if r.namespace is None
                    and r.resource.plural not in ("customresourcedefinitions", "tokenreviews", "berttrainingpolicies")}
    # Cluster-scoped by nature: CRDs, TokenReviews, the policies (namespaces are answered by the proxy).
    assert cluster_wide == set(), "namespaced mode must not list or watch job resources cluster-wide"
    used = used_verbs(requests) | {("", "namespaces", verb) for agent, verb in proxy.answered if agent.startswith(OPERATOR_AGENTS)}
    assert {("", "namespaces", "list"), ("", "namespaces", "watch")} <= used  # kopf follows the watched namespace
    rendered = objects({"watchNamespaces": [NS]})
    cluster_role = one(rendered, "ClusterRole")
    # (the templates Role, in the release namespace, is test_templates_e2e.py's: this operator is given no templates)
    [role] = [r for r in kind(rendered, "Role") if r["metadata"]["name"] != "bert-operator-templates"]
    assert role["metadata"]["namespace"] == NS
    rules = granted(cluster_role["rules"]) | granted(role["rules"])
    assert used - rules == set(), f"used but not granted: {sorted(used - rules)}"
    assert rules - used == set(), f"granted but never used: {sorted(rules - used)}"
    assert EXERCISED <= used

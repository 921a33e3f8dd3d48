"""An emulated Kubernetes API (kmock) on loopback, and the real operator process against it.

The emulator runs in a background thread with its own event loop; tests talk
to it with the real `kubernetes` client through a kubeconfig, exactly as the
operator does. Nothing is monkey-patched: every call is HTTP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import kmock
import kubernetes
import yaml

from tests.conftest import free_port, shared_file

BTJ = "bertoperator.io/v1alpha1/berttrainingjobs"
MPIJOBS = "kubeflow.org/v2beta1/mpijobs"
INFERENCE_SERVICES = "serving.kserve.io/v1beta1/inferenceservices"


def _python_watch(request: kmock.Request) -> bool:
    return request.method == "GET" and (request.params or {}).get("watch") == "True"


class EmulatedCluster:
    """kmock.KubernetesEmulator serving HTTP on 127.0.0.1, declared with this project's resources."""

    def __init__(self, workdir: Path, trim_history: bool = False) -> None:
        self.workdir = workdir
        #: kmock checks each new request against its whole request history (quadratic over a
        #: run); benchmarks keep only a light log of (method, plural, watch) and trim the rest.
        self.trim_history = trim_history
        self.history: list[tuple[str, str | None, bool, str, str | None, float]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="kmock")
        self.emulator: kmock.KubernetesEmulator | None = None
        #: (namespace, pod) -> its log's lines, and the pods whose container has ended: what GET pods/{name}/log
        #: answers (see _serve_pod_log). Written from the tests' thread, read on the emulator's loop.
        self.pod_logs: dict[tuple[str, str], list[str]] = {}
        self.ended_logs: set[tuple[str, str]] = set()

    def __enter__(self) -> "EmulatedCluster":
        self.thread.start()
        self.call(self._start)
        self.connect(self.url)
        return self

    def connect(self, url: str) -> None:
        """A kubeconfig and the real kubernetes client for the API at `url`."""
        self.url = url
        self.kubeconfig = self.workdir / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "test-token"}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "tester"}}],
        }))
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=configuration)
        self.client = kubernetes.client.ApiClient(configuration)
        self.custom = kubernetes.client.CustomObjectsApi(self.client)

    def __exit__(self, *exc: object) -> None:
        self.call(self._stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run a coroutine function on the emulator's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(fn(), self.loop).result(timeout=30)

    async def _start(self) -> None:
        self.emulator = kmock.KubernetesEmulator()
        await self.emulator.__aenter__()
        self.server = kmock.Server(self.emulator, port=free_port())
        await self.server.__aenter__()
        self.url = str(self.emulator.url).rstrip("/")
        resources = self.emulator.resources
        resources[BTJ] = kmock.ResourceInfo(
            kind="BertTrainingJob", singular="berttrainingjob", namespaced=True, shortnames={"btj"},
            verbs={"list", "watch", "get", "patch", "create", "update", "delete"}, subresources={"status"},
        )
        resources[MPIJOBS] = kmock.ResourceInfo(
            kind="MPIJob", singular="mpijob", namespaced=True,
            verbs={"list", "watch", "get", "patch", "create", "update", "delete"}, subresources={"status"},
        )
        # KServe installed: its InferenceServices (the operator watches those of served jobs).
        resources[INFERENCE_SERVICES] = kmock.ResourceInfo(
            kind="InferenceService", singular="inferenceservice", namespaced=True, shortnames={"isvc"},
            verbs={"list", "watch", "get", "patch", "create", "update", "delete"}, subresources={"status"},
        )
        resources["bertoperator.io/v1alpha1/berttrainingpolicies"] = kmock.ResourceInfo(
            kind="BertTrainingPolicy", singular="berttrainingpolicy", namespaced=False, shortnames={"btp"},
            verbs={"list", "watch", "get", "patch", "create", "update", "delete"}, subresources={"status"},
        )
        resources["v1/events"] = kmock.ResourceInfo(kind="Event", singular="event", namespaced=True, verbs={"create", "list"})
        resources["v1/pods"] = kmock.ResourceInfo(kind="Pod", singular="pod", namespaced=True,
                                                  verbs={"create", "get", "list", "watch", "delete"})
        resources["v1/namespaces"] = kmock.ResourceInfo(kind="Namespace", singular="namespace", namespaced=False, verbs={"list", "watch"})
        resources["authentication.k8s.io/v1/tokenreviews"] = kmock.ResourceInfo(
            kind="TokenReview", singular="tokenreview", namespaced=False, verbs={"create"})
        if self.trim_history:
            self.trimmer = asyncio.get_running_loop().create_task(self._trim_forever())

    def serve_client_side(self) -> None:
        """What kubectl-like clients need and kmock lacks (opt-in, so the operator's tests run as before):

        - GET pods/{name}/log: kmock reads it as a fetch of the pod and would answer the pod's JSON; the kubelet's
          log is served from :attr:`pod_logs` instead;
        - the kubernetes client's Watch sends `watch=True` (a Python bool as text), which the API server reads as
          true; kmock takes only `watch=true` for a watch and would answer a list: those get kmock's own watch.
        """
        async def install() -> None:
            self.emulator["get", kmock.resource("v1/pods"), kmock.subresource("log")] << self._serve_pod_log
            self.emulator[_python_watch] << self.emulator._serve_watch

        self.call(install)

    def _serve_pod_log(self, request: kmock.Request) -> Any:
        """A container's log as the API server relays it: text/plain, `tailLines` honoured, and with `follow=true`
        a stream of the lines as they are appended (write_pod_log) until the container ends (end_pod_log)."""
        key = (request.namespace or "", request.name or "")
        if key not in self.pod_logs:
            return kmock.KubernetesError(status=404, reason="NotFound", message=f'pods "{key[1]}" not found')
        tail = int(request.params["tailLines"]) if "tailLines" in request.params else None
        lines = self.pod_logs[key]
        start = max(0, len(lines) - tail) if tail is not None else 0
        if request.params.get("follow") not in ("true", "True", "1", "t", "T", "TRUE"):  # Go's strconv.ParseBool
            return "".join(lines[start:]).encode()

        async def follow() -> Any:
            yield b""  # the headers now, as a real server sends them before the first line
            sent = start
            while True:
                if sent < len(lines):
                    chunk, sent = "".join(lines[sent:]), len(lines)
                    yield chunk.encode()
                elif key in self.ended_logs:
                    return
                else:
                    await asyncio.sleep(0.02)
        return follow()

    async def _trim_forever(self) -> None:
        while True:
            await asyncio.sleep(0.02)
            recorded = self.emulator._requests
            self.history += [self._brief(r) for r in recorded]
            recorded.clear()

    async def _stop(self) -> None:
        if self.trim_history:
            self.trimmer.cancel()
        await self.server.__aexit__(None, None, None)
        await self.emulator.__aexit__(None, None, None)

    # ------------------------------------------------------------ test helpers

    def apply_job(self, document: dict[str, Any], uid: str) -> dict[str, Any]:
        body = {**document, "metadata": {**document["metadata"], "uid": uid, "generation": 1}}
        namespace = body["metadata"].setdefault("namespace", "default")
        return self.custom.create_namespaced_custom_object("bertoperator.io", "v1alpha1", namespace, "berttrainingjobs", body)

    def run_pod(self, namespace: str, name: str, job_name: str, uid: str, stage: str | None = None) -> dict[str, Any]:
        """A pod as the MPI Operator makes it for a stage: the renderer's job-name and stage labels (the stage by
        default read from a name of the form <job>-<stage>-worker-0), a uid."""
        core = kubernetes.client.CoreV1Api(self.client)
        stage = stage or name.removeprefix(f"{job_name}-").split("-")[0]
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "uid": uid,
                "labels": {"bertoperator.io/job-name": job_name, "bertoperator.io/stage": stage}},
                "spec": {"containers": []}}
        return core.create_namespaced_pod(namespace, body, _preload_content=False)

    def write_pod_log(self, namespace: str, pod: str, *lines: str) -> None:
        """Append lines (newline added) to a pod's log, which followers receive at once."""
        self.pod_logs.setdefault((namespace, pod), []).extend(f"{line}\n" for line in lines)

    def end_pod_log(self, namespace: str, pod: str) -> None:
        """The pod's container ended: a follower's stream ends once it has the last line."""
        self.ended_logs.add((namespace, pod))

    def leave_mpijob(self, namespace: str, job_name: str, stage: str, owner_uid: str | None) -> dict[str, Any]:
        """An MPIJob as an earlier operator life (owner_uid) or someone else (None) left it, labelled for `job_name`."""
        metadata: dict[str, Any] = {"name": f"{job_name}-{stage}", "namespace": namespace,
                                    "labels": {"bertoperator.io/job-name": job_name}}
        if owner_uid:
            metadata["ownerReferences"] = [{"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingJob",
                                            "name": job_name, "uid": owner_uid, "controller": True}]
        body = {"apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob", "metadata": metadata, "spec": {"mpiReplicaSpecs": {}}}
        return self.custom.create_namespaced_custom_object("kubeflow.org", "v2beta1", namespace, "mpijobs", body)

    def job(self, namespace: str, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object("bertoperator.io", "v1alpha1", namespace, "berttrainingjobs", name)

    def mpijobs(self, namespace: str | None = None) -> list[dict[str, Any]]:
        if namespace:
            return self.custom.list_namespaced_custom_object("kubeflow.org", "v2beta1", namespace, "mpijobs")["items"]
        return self.custom.list_cluster_custom_object("kubeflow.org", "v2beta1", "mpijobs")["items"]

    def set_mpijob_conditions(self, namespace: str, name: str, *types: str, **extra: Any) -> None:
        """Patch an MPIJob's status the way the MPI Operator does: the full conditions list, latest last."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        conditions = [
            {"type": kind, "status": "True", "reason": f"MPIJob{kind}", "message": f"MPIJob {namespace}/{name} is {kind.lower()}.",
             "lastTransitionTime": now, "lastUpdateTime": now}
            for kind in types
        ]
        status = {"conditions": conditions, **extra}
        self.custom.patch_namespaced_custom_object_status("kubeflow.org", "v2beta1", namespace, "mpijobs", name, {"status": status})

    def post_warning(self, namespace: str, kind: str, name: str, reason: str, message: str) -> dict[str, Any]:
        """A Warning Event about an MPIJob or a pod, as the MPI Operator and the scheduler post them: the involved
        object named with its uid (a restarted stage's MPIJob and pods reuse the old names; the uid tells them
        apart), stamped now."""
        if kind == "MPIJob":
            uid = self.custom.get_namespaced_custom_object("kubeflow.org", "v2beta1", namespace, "mpijobs", name)["metadata"]["uid"]
        else:
            pod = kubernetes.client.CoreV1Api(self.client).read_namespaced_pod(name, namespace, _preload_content=False)
            uid = json.loads(pod.data)["metadata"]["uid"]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": f"{name}.{time.monotonic_ns():x}", "namespace": namespace},
                 "involvedObject": {"kind": kind, "name": name, "namespace": namespace, "uid": uid,
                                    "apiVersion": "kubeflow.org/v2beta1" if kind == "MPIJob" else "v1"},
                 "type": "Warning", "reason": reason, "message": message, "firstTimestamp": now, "lastTimestamp": now,
                 "count": 1}
        answer = kubernetes.client.CoreV1Api(self.client).create_namespaced_event(namespace, event, _preload_content=False)
        return json.loads(answer.data)

    def inference_services(self, namespace: str) -> list[dict[str, Any]]:
        return self.custom.list_namespaced_custom_object("serving.kserve.io", "v1beta1", namespace,
                                                         "inferenceservices")["items"]

    def events(self) -> list[dict[str, Any]]:
        core = kubernetes.client.CoreV1Api(self.client)
        return [e.to_dict() for e in core.list_event_for_all_namespaces().items]

    @staticmethod
    def _brief(request: Any) -> tuple[str, str | None, bool, str, str | None, float]:
        data = request.data if isinstance(request.data, dict) else {}
        return (str(request.method).upper().rsplit(".", 1)[-1], request.resource.plural if request.resource else None,
                bool((request.params or {}).get("watch")), (request.headers or {}).get("User-Agent", ""),
                request.name or (data.get("metadata") or {}).get("name"), time.perf_counter())

    def requests(self) -> list[tuple[str, str | None, bool, str, str | None, float]]:
        """(method, plural, is-watch, user agent, object name, when seen; at most 20 ms late) of every request so far."""
        async def snapshot() -> list[tuple[str, str | None, bool, str, str | None, float]]:
            return self.history + [self._brief(r) for r in self.emulator._requests]
        return self.call(snapshot)

    def operator_reads(self, plural: str, name: str) -> int:
        """How many times the operator (user agent bert-operator/...) has read the object `name` of `plural`."""
        return sum(1 for method, kind, watch, agent, named, _ in self.requests()
                   if method == "GET" and kind == plural and not watch and agent.startswith("bert-operator/") and named == name)

    def wait_syncs(self, mpijob: str, count: int, timeout: float = 60.0) -> None:
        """Wait until the operator has synced the job that runs `mpijob` `count` more times, instead of sleeping for
        `count` resync periods: a sync of a job in flight (a resync, or a watch event) reads its MPIJob afresh."""
        start = self.operator_reads("mpijobs", mpijob)
        self.wait(lambda: self.operator_reads("mpijobs", mpijob) >= start + count, timeout,
                  what=f"{count} more syncs reading MPIJob {mpijob}")

    def wait(self, predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition",
             interval: float = 0.05) -> Any:
        """The first true value of `predicate()`, asked every `interval` seconds (a benchmark asks less often: each
        look costs the emulator CPU the run measures)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = predicate()
            except kubernetes.client.ApiException:
                last = None
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")


@functools.lru_cache(maxsize=1)
def _mpijob_crd() -> dict[str, Any]:
    # libyaml when present: the MPIJob CRD is large, and pure-Python YAML takes a second over it.
    text = shared_file("crds/kubeflow.org_mpijobs.yaml").read_text()
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def mpijob_crd_object() -> dict[str, Any]:
    """The MPIJob CRD as an object the API server serves (its schema is what the operator checks templates against)."""
    crd = copy.deepcopy(_mpijob_crd())
    crd["metadata"] = {"name": crd["metadata"]["name"]}
    return crd


@functools.lru_cache(maxsize=1)
def _inference_service_crd() -> dict[str, Any]:
    from tests.schemas import inference_service_crd

    return inference_service_crd()


@contextlib.contextmanager
def strict_cluster(workdir: Path, *, kueue: str | None = None, admission: list[Any] | None = None,
                   namespaces: Any = None, policies: bool = False, client_side: bool = False,
                   kserve: bool = False) -> Iterator[EmulatedCluster]:
    """The emulated cluster the tests start: kmock behind the strict layer (tests/operator/strict.py) with
    BertTrainingJobs and the MPI Operator's real MPIJob CRD (../shared), as `cluster.strict`.

    kueue: a namespace whose MPIJobs Kueue's webhook suspends and whose Workloads `cluster.kueue` plays
    (tests/operator/kueue_shim.py); admission: more mutating webhooks; namespaces: those the API serves (with their
    labels); policies: BertTrainingPolicies served too; client_side: what kubectl-like clients need
    (EmulatedCluster.serve_client_side); kserve: InferenceServices checked against KServe's real CRD (../shared).
    """
    from bert_operator.api.crd import crd, policy_crd
    from tests.operator.kueue_shim import KueueShim, webhook
    from tests.operator.strict import StrictApiServer
    from tests.schemas import object_errors

    crds = {"berttrainingjobs": crd(), "mpijobs": copy.deepcopy(_mpijob_crd())}
    if policies:
        crds["berttrainingpolicies"] = policy_crd()
    if kserve:
        crds["inferenceservices"] = copy.deepcopy(_inference_service_crd())
    with EmulatedCluster(workdir) as running:
        if client_side:
            running.serve_client_side()
        running.strict = StrictApiServer(running.url, crds, admission=[*([webhook] if kueue else []), *(admission or [])],
                                         namespaces=namespaces, builtins={("batch", "jobs"): object_errors})
        running.connect(running.call(running.strict.start))
        if kueue:
            running.kueue = KueueShim(running, kueue)
        try:
            yield running
        finally:
            running.call(running.strict.stop)


class OperatorProcess:
    """`bertjob operator` as a real subprocess against the emulated cluster."""

    def __init__(self, cluster: EmulatedCluster, *extra: str, resync_seconds: float = 2.0,
                 env: dict[str, str] | None = None) -> None:
        self.cluster = cluster
        self.extra = extra
        self.env = env or {}
        self.resync_seconds = resync_seconds
        self.log = cluster.workdir / f"operator-{time.monotonic_ns()}.log"
        self.progress_port = free_port()

    def start(self) -> "OperatorProcess":
        bertjob = Path(sys.executable).with_name("bertjob")
        self.handle = open(self.log, "w")
        self.process = subprocess.Popen(
            [str(bertjob), "operator", "--kubeconfig", str(self.cluster.kubeconfig), "--liveness-port", "0",
             "--metrics-port", "0", "--progress-port", str(self.progress_port), "--resync-seconds", str(self.resync_seconds), *self.extra],
            stdout=self.handle, stderr=subprocess.STDOUT, cwd=self.cluster.workdir,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
        )
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.handle.close()

    def output(self) -> str:
        return self.log.read_text()

    def __enter__(self) -> "OperatorProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _serve_in_child(workdir: str, pipe: Any) -> None:
    """Child process body: an EmulatedCluster that answers 'requests' and 'stop' over a pipe."""
    with EmulatedCluster(Path(workdir), trim_history=True) as cluster:
        pipe.send(cluster.url)
        while True:
            command = pipe.recv()
            if command == "stop":
                break
            pipe.send(cluster.requests())


class EmulatorProcess(EmulatedCluster):
    """The same emulator in a process of its own, so that it has a core to itself (benchmarks only).

    The client-side helpers are EmulatedCluster's; the emulator's internals are out of reach.
    """

    def __enter__(self) -> "EmulatorProcess":
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.pipe, child_end = context.Pipe()
        self.child = context.Process(target=_serve_in_child, args=(str(self.workdir), child_end), daemon=True)
        self.child.start()
        self.connect(self.pipe.recv())
        return self

    def __exit__(self, *exc: object) -> None:
        self.pipe.send("stop")
        self.child.join(timeout=10)

    def requests(self) -> list[tuple[str, str | None, bool, str, str | None, float]]:
        self.pipe.send("requests")
        return self.pipe.recv()

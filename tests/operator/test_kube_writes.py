"""A job start's three writes (MPIJob create, status merge patch, Event) go through KubeApi's JsonWrites, not the
generated client's call machinery; these tests hold the requests and the refusals equal to the generated client's,
which RBAC (tests/chart/test_operator_access.py) and every API server see."""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest
import urllib3
from kubernetes.client.rest import ApiException

from bert_operator.kube import MPI_GROUP, MPI_PLURAL, MPI_VERSION, KubeApi
from bert_operator.api.presets import API_GROUP, API_VERSION, PLURAL

MPIJOB = {"apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob",
          "metadata": {"name": "j-squad", "namespace": "ml", "labels": {"a": "é"}},
          "spec": {"mpiReplicaSpecs": {"Launcher": {"replicas": 1}}, "slotsPerWorker": 1}}
STATUS = {"phase": "Pending", "stages": [{"name": "squad"}], "message": None}
EVENT = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "j.0a1b", "namespace": "ml"}, "type": "Normal",
         "reason": "Pending", "message": "phase1: New -> Pending"}


class Recorder:
    """The client's urllib3 pool, replaced: records each request and gives one answer."""

    def __init__(self, status: int = 201, body: bytes = b'{"kind": "MPIJob"}') -> None:
        self.status, self.body = status, body
        self.sent: list[tuple[str, str, dict[str, str], Any]] = []

    def request(self, method: str, url: str, body: str | None = None, headers: dict[str, str] | None = None,
                **kwargs: Any) -> urllib3.HTTPResponse:
        self.sent.append((method, url, dict(headers or {}), json.loads(body) if body else None))
        return urllib3.HTTPResponse(body=self.body, status=self.status, reason="Conflict" if self.status == 409 else "OK",
                                    headers={"Content-Type": "application/json", "Audit-Id": "a1"},
                                    preload_content=True)


def client(recorder: Recorder) -> kubernetes.client.ApiClient:
    """An API client with a bearer token refreshed by a hook on every use (as in-cluster credentials are)."""
    configuration = kubernetes.client.Configuration(host="https://api.example:6443")
    configuration.api_key = {"BearerToken": "token-0"}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    tokens = iter(f"token-{i}" for i in range(1, 100))
    configuration.refresh_api_key_hook = lambda config: config.api_key.update(BearerToken=next(tokens))
    api_client = kubernetes.client.ApiClient(configuration)
    api_client.user_agent = "bert-operator/test"
    api_client.rest_client.pool_manager = recorder
    return api_client


def generated(api_client: kubernetes.client.ApiClient) -> None:
    """The three writes as the generated client makes them."""
    custom, core = kubernetes.client.CustomObjectsApi(api_client), kubernetes.client.CoreV1Api(api_client)
    custom.create_namespaced_custom_object(MPI_GROUP, MPI_VERSION, "ml", MPI_PLURAL, MPIJOB, _preload_content=False)
    custom.patch_namespaced_custom_object_status(API_GROUP, API_VERSION, "ml", PLURAL, "j", {"status": STATUS})
    core.create_namespaced_event("ml", EVENT, _preload_content=False)


def ours(api_client: kubernetes.client.ApiClient) -> None:
    api = KubeApi(api_client, attempts=1)
    api.create_or_adopt_mpijob(MPIJOB)
    api.patch_job_status("ml", "j", STATUS)
    api.create_event("ml", EVENT)


def test_a_job_starts_writes_are_the_generated_clients_requests() -> None:
    """Method, URL, headers (Accept, Content-Type, User-Agent, the token as the hook refreshed it) and body."""
    theirs, mine = Recorder(), Recorder()
    generated(client(theirs))
    ours(client(mine))
    assert [sent[:2] for sent in mine.sent] == [
        ("POST", "https://api.example:6443/apis/kubeflow.org/v2beta1/namespaces/ml/mpijobs"),
        ("PATCH", "https://api.example:6443/apis/bertoperator.io/v1alpha1/namespaces/ml/berttrainingjobs/j/status"),
        ("POST", "https://api.example:6443/api/v1/namespaces/ml/events")]
    assert mine.sent == theirs.sent
    assert [sent[2]["authorization"] for sent in mine.sent] == ["Bearer token-1", "Bearer token-2", "Bearer token-3"]


def test_a_refused_write_raises_the_generated_clients_exception() -> None:
    """Status, reason, headers and the body as text: what retries, adoption (409) and api_message read."""
    refusal = b'{"kind": "Status", "code": 409, "reason": "AlreadyExists", "message": "mpijobs \\"j-squad\\" exists"}'
    with pytest.raises(ApiException) as theirs:
        kubernetes.client.CustomObjectsApi(client(Recorder(409, refusal))).create_namespaced_custom_object(
            MPI_GROUP, MPI_VERSION, "ml", MPI_PLURAL, MPIJOB)
    api = KubeApi(client(Recorder(409, refusal)), attempts=1)
    with pytest.raises(ApiException) as mine:
        api._call("create", lambda: api.writes.send("POST", "/apis/kubeflow.org/v2beta1/namespaces/ml/mpijobs", MPIJOB))
    assert (mine.value.status, mine.value.reason, mine.value.body, dict(mine.value.headers or {})) == (
        theirs.value.status, theirs.value.reason, theirs.value.body, dict(theirs.value.headers or {}))
    assert isinstance(mine.value.body, str) and "AlreadyExists" in mine.value.body


def test_a_job_starts_writes_skip_the_generated_clients_serialiser(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bodies are plain JSON already: walking them through the model serialiser was a job start's CPU for
    nothing."""
    def refuse(self: Any, obj: Any) -> Any:
        raise AssertionError("sanitize_for_serialization called")

    recorder = Recorder()
    api_client = client(recorder)
    monkeypatch.setattr(kubernetes.client.ApiClient, "sanitize_for_serialization", refuse)
    ours(api_client)
    assert len(recorder.sent) == 3


class Served:
    """A local HTTP server that records each request (method, path, headers, JSON body) and answers `status`."""

    def __init__(self, status: int = 201, drops: int = 0) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.sent: list[tuple[str, str, dict[str, str], Any]] = []
        #: How many requests are read and then dropped with their connection, unanswered (a keep-alive connection
        #: the server closed, a server restarting).
        self.drops = drops
        served = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                served.sent.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                    json.loads(self.rfile.read(length)) if length else None))
                if served.drops > 0:
                    served.drops -= 1
                    self.close_connection = True
                    return
                answer = json.dumps({"kind": "Status", "reason": "AlreadyExists"} if status >= 400 else {"kind": "X"})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer.encode())

            do_POST = do_PATCH = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def client(self) -> kubernetes.client.ApiClient:
        configuration = kubernetes.client.Configuration(host=f"http://127.0.0.1:{self.server.server_address[1]}")
        configuration.api_key = {"BearerToken": "token-0"}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        api_client = kubernetes.client.ApiClient(configuration)
        api_client.user_agent = "bert-operator/test"
        return api_client


def test_on_the_wire_a_job_starts_writes_are_the_generated_clients_requests() -> None:
    """Through a real connection (each thread's keep-alive one): the server sees what the generated client sends,
    headers included, and the same requests again on the same connection."""
    theirs, mine = Served(), Served()
    try:
        generated(theirs.client())
        api_client = mine.client()
        ours(api_client)
        ours(api_client)
    finally:
        theirs.server.shutdown()
        mine.server.shutdown()
    assert [sent[:2] for sent in mine.sent[:3]] == [
        ("POST", "/apis/kubeflow.org/v2beta1/namespaces/ml/mpijobs"),
        ("PATCH", "/apis/bertoperator.io/v1alpha1/namespaces/ml/berttrainingjobs/j/status"),
        ("POST", "/api/v1/namespaces/ml/events")]

    def wire(sent: tuple[str, str, dict[str, str], Any]) -> tuple[str, str, dict[str, str], Any]:
        method, path, headers, body = sent
        return method, path, {k: v for k, v in headers.items() if k != "host"}, body  # host: each server's own port

    assert [wire(sent) for sent in mine.sent] == [wire(sent) for sent in theirs.sent] * 2


def test_on_the_wire_a_refused_write_raises_the_generated_clients_exception() -> None:
    theirs, mine = Served(409), Served(409)
    try:
        with pytest.raises(ApiException) as generated_refusal:
            kubernetes.client.CustomObjectsApi(theirs.client()).create_namespaced_custom_object(
                MPI_GROUP, MPI_VERSION, "ml", MPI_PLURAL, MPIJOB)
        api = KubeApi(mine.client(), attempts=1)
        with pytest.raises(ApiException) as refusal:
            api.writes.send("POST", "/apis/kubeflow.org/v2beta1/namespaces/ml/mpijobs", MPIJOB)
    finally:
        theirs.server.shutdown()
        mine.server.shutdown()

    def seen(exc: ApiException) -> tuple[Any, ...]:
        headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() != "date"}
        return exc.status, exc.reason, exc.body, headers

    assert seen(refusal.value) == seen(generated_refusal.value)


def test_a_write_whose_connection_breaks_is_sent_once_more_on_a_new_one() -> None:
    """A keep-alive connection the server dropped between two writes is what every long-running client meets: the
    write goes again on a new connection (safe for these three: a create answered before is a 409 the caller
    adopts), and a server that drops every try gives urllib3's ProtocolError, as the generated client would."""
    once, always = Served(drops=1), Served(drops=10)
    try:
        writes = KubeApi(once.client(), attempts=1).writes
        answer = writes.send("POST", "/apis/kubeflow.org/v2beta1/namespaces/ml/mpijobs", MPIJOB)
        with pytest.raises(urllib3.exceptions.ProtocolError):
            KubeApi(always.client(), attempts=1).writes.send("POST", "/api/v1/namespaces/ml/events", EVENT)
    finally:
        once.server.shutdown()
        always.server.shutdown()
    assert json.loads(answer) == {"kind": "X"}
    assert [sent[:2] for sent in once.sent] == [("POST", "/apis/kubeflow.org/v2beta1/namespaces/ml/mpijobs")] * 2
    assert once.sent[0][3] == once.sent[1][3] == MPIJOB
    assert len(always.sent) == 2  # KubeApi.writes.SENDS tries, then the error

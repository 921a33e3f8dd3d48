"""Trainer reports are tenant input: typed, bounded, finite, behind the pod's own stage and attempt, never writing
what the operator owns; the endpoint authenticates before parsing, and its servers cut off slow clients."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import re
import socket
import ssl
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from bert_operator.api import SpecError
from bert_operator.api.crd import crd
from bert_operator.api.parse import parse_job
from bert_operator.local.display import eta_text, progress_text
from bert_operator.progress import ProgressEndpoint
from bert_operator.reports import MAX_RESULTS_BYTES, OPERATOR_RESULTS, StaleReport, merge_report
from bert_operator.serving import Limits
from bert_operator.webhook import WebhookServer, verdict
from tests.conftest import REPO
from tests.operator.strict import crd_schema, decoded, merge_patch, normalised, pruned

NOW = "2026-11-26T12:00:00Z"
TINY = yaml.safe_load((REPO / "examples" / "tiny-pretrain-s3.yaml").read_text())  # phase1 90 steps, phase2 10


def tiny(status: dict[str, Any] | None = None) -> dict[str, Any]:
    body = copy.deepcopy(TINY)
    body["metadata"] = {"name": "tiny", "namespace": "ns", "generation": 1}
    if status is not None:
        body["status"] = status
    return body


@lru_cache(maxsize=1)
def job():
    return parse_job(tiny())


# ------------------------------------------------------------------ what a report may put into status

def test_non_finite_figures_become_null_so_the_status_write_is_json_the_api_server_takes() -> None:
    report = {"stage": "phase1", "results": {"evalLoss": math.nan, "finalLoss": 1.5, "nested": {"x": -math.inf}}}
    patch = merge_report(job(), {}, report, NOW)
    assert patch["results"]["evalLoss"] is None and patch["results"]["finalLoss"] == 1.5
    assert patch["results"]["nested"] == {"x": None}
    progress = merge_report(job(), {}, {"stage": "phase1", "progress": {"step": 1, "totalSteps": 90, "loss": math.inf,
                                                                        "etaSeconds": 1e300}}, NOW)["progress"]
    assert progress["loss"] is None and progress["etaSeconds"] is None  # an ETA of 1e300 s is no estimate
    json.dumps([patch, progress], allow_nan=False)


@pytest.mark.parametrize(("progress", "message"), [
    ({"step": 1, "totalSteps": 90, "loss": "low"}, "progress.loss: must be a number or null, got str"),
    ({"step": 1, "totalSteps": 90, "sequencesPerSecond": True}, "progress.sequencesPerSecond: must be a number"),
    ({"step": 1, "totalSteps": 90, "updatedAt": 5}, "progress.updatedAt: must be an RFC 3339 time"),
    ({"step": 1, "totalSteps": 90, "updatedAt": "yesterday"}, "progress.updatedAt: must be an RFC 3339 time"),
    ({"step": 1.5, "totalSteps": 90}, "progress.step/totalSteps"),
    ({"step": 1, "totalSteps": 2**80}, "progress.step/totalSteps"),
])
def test_every_progress_field_has_the_contracts_type(progress: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        merge_report(job(), {}, {"stage": "phase1", "progress": progress}, NOW)


@pytest.mark.parametrize(("results", "message"), [
    ({"log": "x" * 3000}, "results.log: at most 2048 characters"),
    ({"a": {"b": {"c": {"d": {"e": 1}}}}}, "results.a.b.c.d: nested deeper than 4 levels"),
    ({f"k{i}": i for i in range(300)}, "at most 200 values"),
    ({"x" * 200: 1}, "keys must be 1 to 128 characters"),
    ("lots", "results: must be an object"),
])
def test_results_are_bounded_plain_json(results: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        merge_report(job(), {}, {"stage": "phase1", "results": results}, NOW)


def test_results_stay_bounded_across_reports() -> None:
    """Each report within the bounds, new keys every time: status.results must not grow past them (it grew to 1.3 MB
    in 120 reports, on its way to the API server's limit, where every status write fails)."""
    status: dict[str, Any] = {}
    with pytest.raises(ValueError, match="results: at most"):
        for batch in range(200):
            report = {"stage": "phase1", "results": {f"k{batch}_{i}": "x" * 100 for i in range(100)}}
            status = {**status, **merge_report(job(), status, report, NOW)}
    assert len(json.dumps(status["results"])) <= MAX_RESULTS_BYTES + 100  # (+ the operator's own "stage")


def test_a_report_never_writes_what_the_operator_owns() -> None:
    status = {"results": {"gpuHours": 12.5, "artifacts": [{"stage": "phase2", "format": "hf", "uri": "s3://b/x"}]}}
    report = {"stage": "phase1", "results": {"gpuHours": 0, "artifacts": 5, "stage": "phase2", "finalLoss": 2.0}}
    results = merge_report(job(), status, report, NOW)["results"]
    assert results == {**status["results"], "finalLoss": 2.0, "stage": "phase1"}


def test_progress_never_moves_back_within_a_stage_attempt() -> None:
    stored = {"progress": {"stage": "phase1", "step": 50, "totalSteps": 90, "updatedAt": "2026-11-26T11:59:00Z"},
              "stages": [{"name": "phase1", "runningSince": "2026-11-26T11:00:00Z"}]}
    with pytest.raises(StaleReport, match="progress.step: 40 is behind step 50"):
        merge_report(job(), stored, {"stage": "phase1", "progress": {"step": 40, "totalSteps": 90}}, NOW)
    with pytest.raises(StaleReport, match="is older than"):
        merge_report(job(), stored, {"stage": "phase1", "progress": {"step": 50, "totalSteps": 90,
                                                                     "updatedAt": "2026-11-26T11:58:00Z"}}, NOW)
    later = {**stored, "progress": {**stored["progress"], "stage": "phase2", "step": 1, "totalSteps": 10}}
    with pytest.raises(StaleReport, match="progress of phase1 after phase2"):
        merge_report(job(), later, {"stage": "phase1", "progress": {"step": 89, "totalSteps": 90}}, NOW)
    # A restart resumes from its checkpoint: the new attempt's lower step is progress, not a replay.
    restarted = {**stored, "stages": [{"name": "phase1", "lastRestartTime": "2026-11-26T11:59:30Z"}]}
    assert merge_report(job(), restarted, {"stage": "phase1", "progress": {"step": 40, "totalSteps": 90}},
                        NOW)["progress"]["step"] == 40


# --------------------------------------------------------------- the status is never validated as a spec

def test_a_long_integer_in_status_leaves_the_spec_valid_for_reports_and_the_webhook() -> None:
    """1e20 in a status comes back from a real API server as 100000000000000000000 (Go writes floats below 1e21
    without an exponent): the job must stay valid, and `suspend` must still pass the webhook."""
    body = tiny({"results": normalised({"finalLoss": 1e20}), "progress": {"etaSeconds": 10**20}})
    assert body["status"]["results"]["finalLoss"] == 10**20
    parse_job(body)
    assert verdict(body) == (None, [])
    suspended = copy.deepcopy(body)
    suspended["spec"].setdefault("runPolicy", {})["suspend"] = True
    assert verdict(suspended)[0] is None
    with pytest.raises(SpecError):  # the spec is still checked
        parse_job({**body, "spec": {**body["spec"], "resources": {"workers": 10**20}}})


@pytest.mark.parametrize(("seconds", "shown"), [
    (5, "5s"), (75.5, "1m15s"), (99 * 3600, "5940m00s"), (400 * 3600, "400h"), (1e300, ">99999h"), (10**20, ">99999h"),
    (math.nan, ""), (math.inf, ""), (-5, ""), (True, ""), ("soon", ""),
])
def test_a_displayed_eta_is_bounded(seconds: Any, shown: str) -> None:
    assert eta_text(seconds) == shown


def test_displayed_figures_are_bounded() -> None:
    text = progress_text({"stage": "phase1", "loss": 1e300, "sequencesPerSecond": 10**30, "etaSeconds": 1e300})
    # Figures beyond untrusted.MAX_NUMBER are left out (no loss of 1e300 is a loss); the rest are shown short.
    assert len(text) < 60 and not re.search(r"\d{16}", text), text
    assert progress_text({"stage": "phase1", "loss": 3e9}) == "phase1 loss 3e+09"


# ------------------------------------------------------------------ the endpoint, served as the operator serves it

class FakeApi:
    """The API server as the endpoint sees it: TokenReview (a token is 'good' or not), one pod, one job."""

    def __init__(self) -> None:
        self.reviews: list[str] = []
        self.pod_stage = "phase1"
        self.job = tiny({})

    def review_token(self, token: str, audience: str) -> dict[str, Any]:
        self.reviews.append(token)
        return {"authenticated": token == "good", "user": {
            "username": "system:serviceaccount:ns:default",
            "extra": {"authentication.kubernetes.io/pod-name": ["tiny-phase1-worker-0"],
                      "authentication.kubernetes.io/pod-uid": ["pod-uid"]}}}

    def get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "uid": "pod-uid",
                             "labels": {"bertoperator.io/job-name": "tiny", "bertoperator.io/stage": self.pod_stage}}}

    def get_job(self, namespace: str, name: str) -> dict[str, Any]:
        return self.job


class FakeReconciler:
    def __init__(self, api: FakeApi) -> None:
        self.api = api

    def lock(self, namespace: str, name: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def record(self, body: dict[str, Any], patch: dict[str, Any]) -> None:
        self.api.job = {**body, "status": {**(body.get("status") or {}), **patch}}


@contextlib.contextmanager
def running_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


@contextlib.contextmanager
def served_endpoint(limits: Limits) -> Iterator[tuple[FakeApi, Any, int]]:
    """The progress endpoint on a loopback port within `limits`, as handlers.configure serves it."""
    api = FakeApi()
    endpoint = ProgressEndpoint(api, FakeReconciler(api), lambda: NOW, limits)  # type: ignore[arg-type]
    with running_loop() as loop:
        runner, site = asyncio.run_coroutine_threadsafe(endpoint.serve("127.0.0.1", 0), loop).result(10)
        try:
            yield api, runner, site.port
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)


@pytest.fixture(scope="module")
def quick() -> Iterator[tuple[FakeApi, Any, int]]:
    with served_endpoint(Limits(read_timeout=0.5, max_connections=64)) as served:
        yield served


def post(port: int, body: bytes, token: str = "good") -> tuple[int, dict[str, Any]]:
    head = (f"POST /progress/ns/tiny HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2] or b"{}")


def test_nothing_is_parsed_before_the_token_is_checked(quick: tuple[FakeApi, Any, int]) -> None:
    api, _, port = quick
    deep = b"[" * 100_000 + b"]" * 100_000
    code, answer = post(port, deep[:60_000], token="forged")
    assert code == 401 and "token not accepted" in answer["message"]
    code, answer = post(port, b'{"stage": ' + b"[" * 5000 + b"]" * 5000 + b"}")
    assert code == 400 and "nested deeper than 8 levels" in answer["message"]
    code, answer = post(port, deep)
    assert code == 413 and "at most 65536 bytes" in answer["message"]


def test_a_pod_reports_only_for_its_own_stage(quick: tuple[FakeApi, Any, int]) -> None:
    api, _, port = quick
    api.job, api.pod_stage = tiny({}), "phase1"
    code, answer = post(port, json.dumps({"stage": "phase2", "progress": {"step": 5, "totalSteps": 10}}).encode())
    assert code == 403 and "it is a pod of stage 'phase1'" in answer["message"]
    assert "progress" not in api.job["status"]
    code, _ = post(port, json.dumps({"stage": "phase1", "progress": {"step": 50, "totalSteps": 90}}).encode())
    assert code == 200 and api.job["status"]["progress"]["step"] == 50
    code, answer = post(port, json.dumps({"stage": "phase1", "progress": {"step": 40, "totalSteps": 90}}).encode())
    assert code == 409 and "behind step 50" in answer["message"] and api.job["status"]["progress"]["step"] == 50
    code, _ = post(port, b'{"stage": "phase1", "results": {"evalLoss": NaN, "gpuHours": 1e9}}')
    assert code == 200 and api.job["status"]["results"] == {"evalLoss": None, "stage": "phase1"}


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes `sock` (EOF, or a 408 answer and then EOF) within `seconds`."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def test_a_slow_client_is_cut_off_at_the_read_timeout(quick: tuple[FakeApi, Any, int]) -> None:
    _, _, port = quick
    with socket.create_connection(("127.0.0.1", port)) as partial_head:
        partial_head.sendall(b"POST /progress/ns/tiny HTTP/1.1\r\nHost: x\r\nAuthor")
        assert closed_within(partial_head, 5)
    with socket.create_connection(("127.0.0.1", port)) as partial_body:
        partial_body.sendall(b"POST /progress/ns/tiny HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n"
                             b"Content-Length: 100\r\n\r\n{\"stage\"")
        assert closed_within(partial_body, 5)
    assert post(port, b"{}")[0] == 400  # the server still answers


def test_connections_beyond_the_cap_are_closed_at_once() -> None:
    with served_endpoint(Limits(read_timeout=30, max_connections=3)) as (_, runner, port):
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        try:
            deadline = time.monotonic() + 10
            while len(runner.server.connections) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            with socket.create_connection(("127.0.0.1", port)) as extra:
                assert closed_within(extra, 5)
            idle.pop().close()
            while len(runner.server.connections) > 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert post(port, b"{}")[0] == 400  # a slot again: answered
        finally:
            for sock in idle:
                sock.close()


def test_the_webhook_server_cuts_off_slow_clients(tmp_path: Path) -> None:
    from tests.operator.test_operator_e2e import tls_files

    certs = tls_files(tmp_path)
    server = WebhookServer(addr="127.0.0.1", port=0, certfile=str(certs / "tls.crt"), pkeyfile=str(certs / "tls.key"),
                           limits=Limits(read_timeout=0.5, max_connections=8))

    async def admit(request: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {"response": {"allowed": True}}

    with running_loop() as loop:
        serving = server(admit)
        asyncio.run_coroutine_threadsafe(serving.__anext__(), loop).result(10)
        try:
            with socket.create_connection(("127.0.0.1", server.bound_port)) as no_handshake:
                assert closed_within(no_handshake, 5)
            context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
            with context.wrap_socket(socket.create_connection(("127.0.0.1", server.bound_port)),
                                     server_hostname="127.0.0.1") as partial:
                partial.sendall(b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Le")
                assert closed_within(partial, 5)
        finally:
            asyncio.run_coroutine_threadsafe(serving.aclose(), loop).result(10)


# ------------------------------------------------------------------ property: whatever a report holds

@lru_cache(maxsize=1)
def status_validator() -> tuple[dict[str, Any], jsonschema.Draft4Validator]:
    """The CRD's status schema and one validator of it, built once for all examples."""
    schema = crd_schema(crd(), crd()["spec"]["versions"][0]["name"])["properties"]["status"]
    return schema, jsonschema.Draft4Validator(schema)


big_numbers = st.sampled_from([1e20, 2**63, 2**64 + 1, 1e300, -0.0, 10**400, math.nan, math.inf])
json_leaves = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=30),
                        st.floats(allow_nan=True, allow_infinity=True), big_numbers)
json_values = st.recursive(json_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(min_size=1, max_size=12), inner, max_size=4)), max_leaves=12)
figures = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70), big_numbers, json_values)
progress_bodies = st.one_of(
    st.fixed_dictionaries({"step": st.integers(0, 90), "totalSteps": st.just(90)}, optional={
        **{name: figures for name in ("loss", "mlmAccuracy", "etaSeconds", "sequencesPerSecond")},
        "updatedAt": st.sampled_from(["2026-11-26T11:00:00Z", "2026-11-26T12:30:00+01:00", "later", 5]),
        "madeUp": json_values}),
    json_values)
result_keys = st.sampled_from([*OPERATOR_RESULTS, "evalLoss", "f1", "checkpoint"]) | st.text(min_size=1, max_size=8)
result_bodies = st.one_of(st.dictionaries(result_keys, json_values, max_size=6), json_values)
reports = st.fixed_dictionaries({"stage": st.sampled_from(["phase1", "phase1", "phase2", "phase2", "phase9", 5])},
                                optional={"progress": progress_bodies, "results": result_bodies})


@given(reports)
def test_no_report_makes_a_status_the_api_server_refuses_or_writes_what_the_operator_owns(report: dict[str, Any]) -> None:
    schema, validator = status_validator()
    before = {"observedGeneration": 1, "results": {"gpuHours": 3.5, "artifacts": [{"stage": "phase1", "format": "hf",
                                                                                    "uri": "s3://b/x"}]}}
    try:
        patch = merge_report(job(), before, report, NOW)
    except ValueError:
        return  # refused, with a message: nothing written
    sent = json.dumps({"status": patch}, allow_nan=False).encode()  # the PATCH body the operator's client sends
    status = pruned(normalised(merge_patch(before, decoded(sent)["status"])), schema)
    assert not list(validator.iter_errors(status))
    assert {key: status["results"][key] for key in ("gpuHours", "artifacts")} == before["results"]
    assert status["results"].get("stage", report["stage"]) == report["stage"]
    parse_job(tiny(status))  # and the job stays valid for every later report and the webhook
    assert len(eta_text((status.get("progress") or {}).get("etaSeconds"))) <= 8

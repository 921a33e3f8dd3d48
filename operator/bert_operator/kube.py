"""The few Kubernetes API calls the operator makes, with retries for transient faults.

A thin layer over the official `kubernetes` client: the reconciler states
what it wants (create or adopt this MPIJob, merge this status) and this module
makes it survive 409s, 429s and 5xx answers.
"""

from __future__ import annotations

import functools
import http.client
import json
import logging
import ssl
import threading
import time
from typing import Any, Callable, Mapping, TypeVar
from urllib.parse import quote

import kubernetes
import urllib3
from kubernetes.client.rest import ApiException

from .api.policy import POLICY_PLURAL
from .api.presets import API_GROUP, API_VERSION, PLURAL
from bert_common.contract import JOB_NAME_LABEL, STAGE_LABEL
from .version import package_version
from .kueue import JOB_UID_LABEL, WORKLOAD_GROUP, WORKLOAD_PLURAL, WORKLOAD_VERSION, KueueNotInstalled
from .metrics import API_ERRORS, API_REQUESTS
from .reconcile.ports import NamespaceTerminating, ReadFailed, Rejected

log = logging.getLogger(__name__)
T = TypeVar("T")

MPI_GROUP, MPI_VERSION, MPI_PLURAL = "kubeflow.org", "v2beta1", "mpijobs"
ISVC_GROUP, ISVC_VERSION, ISVC_PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
RETRYABLE = frozenset({429, 500, 502, 503, 504})
#: Answers that refuse the object itself (schema, admission): sending it again cannot succeed.
REJECTED = frozenset({400, 422})
#: The StatusCause type of the API server's 403 to a create in a namespace being deleted (NamespaceLifecycle).
NAMESPACE_TERMINATING_CAUSE = "NamespaceTerminating"
#: How long a Workload API that answered 404 (Kueue not installed) is taken as absent before it is asked again.
KUEUE_RECHECK_SECONDS = 600.0


#: What a read raises when the API server answers with an error, or no answer comes (refused, reset, timed out), or
#: the answer is not JSON: the faults of the cluster, as opposed to this code's own.
READ_FAULTS = (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError)


def courtesy_read(what: str, read: Callable[[], T]) -> T:
    """`read()`, its faults (READ_FAULTS) raised as ports.ReadFailed naming `what`: a read the plan can do without."""
    try:
        return read()
    except READ_FAULTS as exc:
        raise ReadFailed(f"{what}: {type(exc).__name__}: {exc}"[:300]) from exc


def _status_body(exc: ApiException) -> dict[str, Any]:
    try:
        body = json.loads(exc.body or "{}")
    except (ValueError, TypeError):
        return {}
    return body if isinstance(body, dict) else {}


def api_message(exc: ApiException) -> str:
    """The API server's own message from an error answer (its Status body), else the HTTP reason."""
    message = _status_body(exc).get("message")
    return str(message or exc.reason or f"HTTP {exc.status}")


def namespace_terminating(exc: ApiException) -> bool:
    """Whether an answer is the API server's refusal to create in a namespace being deleted: 403 Forbidden with the
    cause NamespaceTerminating ('... is forbidden: unable to create new content in namespace X because it is being
    terminated')."""
    if exc.status != 403:
        return False
    causes = (_status_body(exc).get("details") or {}).get("causes") or []
    return any(isinstance(cause, dict) and cause.get("type") == NAMESPACE_TERMINATING_CAUSE for cause in causes)


class ConflictUnresolved(RuntimeError):
    """A create kept answering 409 while the object it conflicts with could not be read."""


def load_config(kubeconfig: str | None = None) -> kubernetes.client.ApiClient:
    """An API client from the pod's service account, else from KUBECONFIG / ~/.kube/config."""
    configuration = kubernetes.client.Configuration()
    loaded = False
    if kubeconfig is None:
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
            loaded = True
        except kubernetes.config.ConfigException:
            pass
    if not loaded:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    # Handlers run in a thread pool; the default of 4 pooled connections makes them queue.
    configuration.connection_pool_maxsize = 32
    client = kubernetes.client.ApiClient(configuration)
    client.user_agent = f"bert-operator/{package_version()}"
    return client


@functools.lru_cache(maxsize=4096)
def _quoted(part: str, safe: str) -> str:
    return quote(part, safe=safe)


class JsonWrites:
    """The writes of every job start (MPIJob create, status merge patch, Event), sent as JSON on a keep-alive
    connection of each thread's own, made by the kubernetes client's connection pool (its TLS settings).

    The generated client walks each body through its model serialiser, validates its keyword arguments and picks
    headers per call, and urllib3's pool manager, pool and response layers add as much again (about 800 us of CPU
    per request here against 450 us for http.client alone): for plain JSON bodies that is work with no effect, and
    it was the largest share of a job start's CPU. These requests are the client's to the byte that matters: the
    same method, path, Accept and Content-Type, its default headers (User-Agent) and its credentials (its auth
    settings, refreshed by its hook as it does), the same host and TLS; a refusal raises the same ApiException
    (status, reason, headers, body as text), a broken connection urllib3's ProtocolError. A client behind a proxy
    sends them through its pool manager instead. Every other call goes through the generated client."""

    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        self.client = client
        self._local = threading.local()
        self._host_prefix: tuple[str | None, str] = (None, "")

    def path(self, *parts: str) -> str:
        """A resource path: each part quoted as the client quotes path parameters (each part's quoting kept: the
        group, version, plural and namespace of a job start's paths repeat)."""
        safe = self.client.configuration.safe_chars_for_path_param
        return "/" + "/".join(_quoted(part, safe) for part in parts)

    def _prefix(self) -> str:
        """The path of the client's host URL (an API server behind a path), parsed once per host."""
        host = self.client.configuration.host
        if self._host_prefix[0] != host:
            self._host_prefix = (host, (urllib3.util.parse_url(host).path or "").rstrip("/"))
        return self._host_prefix[1]

    def _connection(self) -> Any:
        """This thread's connection to the API server (urllib3's, so its TLS is the client's), open or to be reopened;
        None where the client's pool manager is a proxy's."""
        manager = self.client.rest_client.pool_manager
        if isinstance(manager, urllib3.ProxyManager) or not isinstance(manager, urllib3.PoolManager):
            return None
        connection = getattr(self._local, "connection", None)
        if connection is None or self._local.manager is not manager:
            pool = manager.connection_from_url(self.client.configuration.host)
            connection = self._local.connection = pool._new_conn()  # noqa: SLF001 - a connection as the pool makes it
            self._local.manager = manager
        elif not connection.is_connected:  # closed by the server since (as the pool checks before reusing one)
            connection.close()
        return connection

    def send(self, method: str, path: str, body: Any, content_type: str = "application/json") -> bytes:
        """The answer's body of a request with a JSON body; ApiException for an answer outside 2xx."""
        client = self.client
        headers = {"Accept": "application/json", "Content-Type": content_type, **client.default_headers}
        if client.cookie:
            headers["Cookie"] = client.cookie
        client.update_params_for_auth(headers, [], ["BearerToken"])
        data = json.dumps(body)
        connection = self._connection()
        try:
            if connection is None:
                answer = client.rest_client.pool_manager.request(method, client.configuration.host + path, body=data,
                                                                 headers=headers)
                status, reason, text, answer_headers = answer.status, answer.reason, bytes(answer.data), answer.headers
            else:
                status, reason, text, response = self._exchange(connection, method, path, data, headers)
                answer_headers = None if 200 <= status <= 299 else urllib3.HTTPHeaderDict(response.getheaders())
        except urllib3.exceptions.SSLError as exc:
            raise ApiException(status=0, reason=f"{type(exc).__name__}\n{exc}") from None
        if not 200 <= status <= 299:
            refused = ApiException(status=status, reason=reason)
            refused.body, refused.headers = text.decode("utf-8"), answer_headers
            raise refused
        return text


    #: Sends of one request on a connection that broke: a keep-alive connection the server closed between two
    #: checks, or a connect that failed once, is tried again on a new one (urllib3 retried connects too). Resending
    #: is safe for these three writes: a create answered before is a 409 the caller adopts, a status merge patch is
    #: idempotent, an Event of the same name is a 409.
    SENDS = 2

    def _exchange(self, connection: Any, method: str, path: str, data: str,
                  headers: dict[str, str]) -> tuple[int, str, bytes, http.client.HTTPResponse]:
        """(status, reason, body, the response: its headers, read only for a refusal) of one request on this
        thread's connection, sent again on a new connection when the first one broke (SENDS); urllib3's
        ProtocolError (SSLError for TLS) when it breaks every time."""
        prefix = self._prefix()
        for attempt in range(1, self.SENDS + 1):
            try:
                http.client.HTTPConnection.request(connection, method, prefix + path, body=data, headers=headers)
                response = http.client.HTTPConnection.getresponse(connection)
                answer = (response.status, response.reason, response.read(), response)
            except (http.client.HTTPException, OSError) as exc:
                connection.close()
                if isinstance(exc, ssl.SSLError):
                    raise urllib3.exceptions.SSLError(exc) from exc
                if attempt == self.SENDS:
                    raise urllib3.exceptions.ProtocolError("Connection aborted.", exc) from exc
                log.debug("api write resent on a new connection method=%s error=%s", method, type(exc).__name__)
                continue
            if response.will_close:
                connection.close()
            return answer
        raise AssertionError("unreachable")  # pragma: no cover


class KubeApi:
    """The operator's view of the API server."""

    def __init__(self, client: kubernetes.client.ApiClient, attempts: int = 6, backoff: float = 0.05) -> None:
        self.writes = JsonWrites(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.core = kubernetes.client.CoreV1Api(client)
        self.batch = kubernetes.client.BatchV1Api(client)
        self.auth = kubernetes.client.AuthenticationV1Api(client)
        self.attempts = attempts
        self.backoff = backoff
        #: Until when (time.monotonic) the Workload API is taken as absent: Kueue's CRD is found missing once, not
        #: on every reconcile of a queued job.
        self._kueue_absent_until = 0.0

    def _call(self, verb: str, fn: Callable[[], T], expected: frozenset[int] = frozenset()) -> T:
        """Run one API call, retrying transient failures with exponential backoff (Retry-After honoured).

        `expected` are the answers the caller asks the question for (a 404 from a read that checks whether an
        object is there, a 409 from a create that adopts): raised at once, and not counted in
        bertoperator_api_errors_total, which counts only answers that mean something went wrong. A create refused
        because the namespace is being deleted is expected everywhere (the namespace takes the job with it)."""
        for attempt in range(1, self.attempts + 1):
            API_REQUESTS.labels(verb=verb).inc()
            try:
                return fn()
            except ApiException as exc:
                if exc.status in expected or namespace_terminating(exc):
                    raise
                API_ERRORS.labels(verb=verb, code=str(exc.status)).inc()
                if exc.status not in RETRYABLE or attempt == self.attempts:
                    raise
                retry_after = (exc.headers or {}).get("Retry-After")
                delay = float(retry_after) if retry_after and retry_after.isdigit() else self.backoff * 2 ** (attempt - 1)
                log.warning("api retry verb=%s code=%s attempt=%d delay=%.2fs", verb, exc.status, attempt, delay)
                time.sleep(min(delay, 5.0))
        raise AssertionError("unreachable")  # pragma: no cover

    def create_event(self, namespace: str, event: dict[str, Any]) -> None:
        """Post one core/v1 Event, with the retries and metrics of every call (a job start's write: JsonWrites). The
        answer is not decoded: nothing reads it."""
        path = self.writes.path("api", "v1", "namespaces", namespace, "events")
        self._call("create", lambda: self.writes.send("POST", path, event))

    # ----------------------------------------------------------------- MPIJobs

    def _get_or_none(self, group: str, version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._call("get", lambda: self.custom.get_namespaced_custom_object(group, version, namespace, plural, name),
                              expected=frozenset({404}))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def get_mpijob(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_or_none(MPI_GROUP, MPI_VERSION, MPI_PLURAL, namespace, name)

    def create_or_adopt_mpijob(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create the MPIJob; if it exists already (restart, retry after a lost answer), return that one.

        Returns (mpijob, created). Never makes a second MPIJob: the name is
        deterministic, so the API server's 409 is the duplicate guard. A 409
        whose object is gone by the time it is read (deleted in between) is
        tried again a bounded number of times with backoff, then reported.
        Raises :class:`Rejected` when the API server refuses the object itself, :class:`NamespaceTerminating` when
        it refuses it because the namespace is being deleted.
        """
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        path = self.writes.path("apis", MPI_GROUP, MPI_VERSION, "namespaces", namespace, MPI_PLURAL)
        for attempt in range(1, self.attempts + 1):
            try:
                # A job start's write (JsonWrites); a 200 answer is decoded as a 201 is.
                answer = self._call("create", lambda: self.writes.send("POST", path, body), expected=frozenset({409}))
                return json.loads(answer), True
            except ApiException as exc:
                if namespace_terminating(exc):
                    raise NamespaceTerminating(namespace) from None
                if exc.status in REJECTED:
                    raise Rejected(exc.status, api_message(exc)) from None
                if exc.status != 409:
                    raise
            existing = self.get_mpijob(namespace, name)
            if existing is not None:
                return existing, False
            delay = self.backoff * 2 ** (attempt - 1)
            log.warning("mpijob create conflict but not found mpijob=%s/%s attempt=%d delay=%.2fs", namespace, name,
                        attempt, delay)
            time.sleep(min(delay, 5.0))
        raise ConflictUnresolved(f"MPIJob {namespace}/{name}: create answered 409 (exists) but reading it answered "
                                 f"404 (not found) {self.attempts} times")

    def patch_mpijob(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self._call("patch", lambda: self.custom.patch_namespaced_custom_object(
            MPI_GROUP, MPI_VERSION, namespace, MPI_PLURAL, name, patch))

    def delete_mpijob(self, namespace: str, name: str, uid: str) -> dict[str, Any] | None:
        """Delete the MPIJob of `uid` in the foreground: it stays (with deletionTimestamp) until the garbage collector
        has removed its pods, launcher Job and Services, so a stage re-created under the same name never meets
        the old pods. None once it is gone; a 409 (the name holds another uid by now) counts as gone."""
        options = kubernetes.client.V1DeleteOptions(propagation_policy="Foreground",
                                                    preconditions=kubernetes.client.V1Preconditions(uid=uid))
        try:
            answer = self._call("delete", lambda: self.custom.delete_namespaced_custom_object(
                MPI_GROUP, MPI_VERSION, namespace, MPI_PLURAL, name, body=options, _preload_content=False),
                expected=frozenset({404, 409}))
        except ApiException as exc:
            if exc.status in (404, 409):
                return None
            raise
        left = json.loads(answer.data or b"{}")
        # An object that is still there comes back as itself; one deleted at once as a Status.
        return left if left.get("kind") == "MPIJob" and (left.get("metadata") or {}).get("deletionTimestamp") else None

    def list_stage_pods(self, namespace: str, job: str, stage: str) -> list[dict[str, Any]]:
        selector = f"{JOB_NAME_LABEL}={job},{STAGE_LABEL}={stage}"

        def read() -> list[dict[str, Any]]:
            answer = self._call("list", lambda: self.core.list_namespaced_pod(namespace, label_selector=selector,
                                                                              _preload_content=False))
            return list(json.loads(answer.data).get("items") or [])

        return courtesy_read(f"pods of {job}/{stage}", read)

    # ----------------------------------------------------------- Kueue Workloads

    def find_workload(self, namespace: str, mpijob_uid: str) -> dict[str, Any] | None:
        """The Workload Kueue made for an MPIJob, None if none yet; :class:`KueueNotInstalled` when the Workload API
        is not served (found once, then taken as absent for KUEUE_RECHECK_SECONDS without asking)."""
        if time.monotonic() < self._kueue_absent_until:
            raise KueueNotInstalled()
        try:
            answer = self._call("list", lambda: self.custom.list_namespaced_custom_object(
                WORKLOAD_GROUP, WORKLOAD_VERSION, namespace, WORKLOAD_PLURAL,
                label_selector=f"{JOB_UID_LABEL}={mpijob_uid}"), expected=frozenset({404}))
        except READ_FAULTS as exc:
            if not isinstance(exc, ApiException) or exc.status != 404:
                raise ReadFailed(f"the Workload of MPIJob uid {mpijob_uid}: {type(exc).__name__}: {exc}"[:300]) from exc
            # A list answers 404 only when the resource itself is not served.
            if not self._kueue_absent_until:
                log.info("kueue not installed: the Workload API (%s/%s %s) answered 404; queued stages say so, "
                         "and it is asked again every %.0fs", WORKLOAD_GROUP, WORKLOAD_VERSION, WORKLOAD_PLURAL,
                         KUEUE_RECHECK_SECONDS)
            self._kueue_absent_until = time.monotonic() + KUEUE_RECHECK_SECONDS
            raise KueueNotInstalled() from None
        # Checked again here: acting on another job's Workload (spec.active) must not hang on a server honouring
        # the selector.
        items = [w for w in answer.get("items") or []
                 if ((w.get("metadata") or {}).get("labels") or {}).get(JOB_UID_LABEL) == mpijob_uid]
        # Kueue keeps one Workload per job; when it replaces one, the newest is the one it acts on.
        return max(items, key=lambda w: str((w.get("metadata") or {}).get("creationTimestamp") or "")) if items else None

    def patch_workload(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self._call("patch", lambda: self.custom.patch_namespaced_custom_object(
            WORKLOAD_GROUP, WORKLOAD_VERSION, namespace, WORKLOAD_PLURAL, name, patch))

    # -------------------------------------------------- KServe InferenceServices

    def get_inference_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The job's InferenceService; None if there is none or KServe's API is not served (a get answers 404 for
        both). Any other failure is ReadFailed: the plan then neither creates over it nor deletes it."""
        try:
            return self._get_or_none(ISVC_GROUP, ISVC_VERSION, ISVC_PLURAL, namespace, name)
        except READ_FAULTS as exc:
            raise ReadFailed(f"InferenceService {namespace}/{name}: {type(exc).__name__}: {exc}"[:300]) from exc

    def create_inference_service(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create it; a 409 answers the one that exists (the plan then sees whose it is). Rejected for a refusal of
        the object (400/422), and for a 404: the InferenceService API is not served (KServe is not installed)."""
        path = self.writes.path("apis", ISVC_GROUP, ISVC_VERSION, "namespaces", body["metadata"]["namespace"],
                                ISVC_PLURAL)
        refused = {404: f"the InferenceService API ({ISVC_GROUP}/{ISVC_VERSION}) is not served: KServe is not "
                        "installed (docs/install.md)"}
        return self._create_once("InferenceService", path, body, refused, self.get_inference_service)

    def _create_once(self, kind: str, path: str, body: dict[str, Any], refused: Mapping[int, str | None],
                     read: Callable[[str, str], dict[str, Any] | None]) -> tuple[dict[str, Any], bool]:
        """Create an object a job makes once (its InferenceService, its cleanup Job): (the object, True), or on a 409
        (made before, the answer lost) the one that exists, read back, with False. Rejected for a refusal of the
        object (400/422, and the answers in `refused`: code -> message, None for the server's own)."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            answer = self._call("create", lambda: self.writes.send("POST", path, body),
                                expected=frozenset({409, *refused}))
            return json.loads(answer), True
        except ApiException as exc:
            if namespace_terminating(exc):
                raise NamespaceTerminating(namespace) from None
            if exc.status in REJECTED or exc.status in refused:
                raise Rejected(exc.status, refused.get(exc.status) or api_message(exc)) from None
            if exc.status != 409:
                raise
        existing = read(namespace, name)
        if existing is None:  # deleted in between: the next reconcile creates it
            raise ConflictUnresolved(f"{kind} {namespace}/{name}: create answered 409 but it is gone")
        return existing, False

    def patch_inference_service(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._call("patch", lambda: self.custom.patch_namespaced_custom_object(
                ISVC_GROUP, ISVC_VERSION, namespace, ISVC_PLURAL, name, patch))
        except ApiException as exc:
            if exc.status in REJECTED:
                raise Rejected(exc.status, api_message(exc)) from None
            raise

    def delete_inference_service(self, namespace: str, name: str, uid: str) -> None:
        """Delete it (that uid only; its pods go with it in the background): gone, or another uid, is done."""
        options = kubernetes.client.V1DeleteOptions(
            preconditions=kubernetes.client.V1Preconditions(uid=uid) if uid else None)
        try:
            self._call("delete", lambda: self.custom.delete_namespaced_custom_object(
                ISVC_GROUP, ISVC_VERSION, namespace, ISVC_PLURAL, name, body=options, _preload_content=False),
                expected=frozenset({404, 409}))
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    # ------------------------------------------------------ a sweep's cleanup Job

    def get_batch_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Job; None if there is none; ReadFailed for any other failure (the plan then adopts it on a 409)."""
        return courtesy_read(f"Job {namespace}/{name}", lambda: self._read_or_none(
            lambda: self.batch.read_namespaced_job(name, namespace, _preload_content=False)))

    def _read_or_none(self, read: Callable[[], Any]) -> dict[str, Any] | None:
        """A built-in object read undecoded by the generated client (`read`, with _preload_content=False), as JSON;
        None when the API server answers 404."""
        try:
            answer = self._call("get", read, expected=frozenset({404}))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        found: dict[str, Any] = json.loads(answer.data)
        return found

    def create_batch_job(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create it; a 409 answers the one that exists (the plan then sees whose it is). Rejected for a refusal of
        the object (400/422, and 403: PodSecurity admission, or RBAC without create on jobs.batch; sending it again
        cannot succeed)."""
        path = self.writes.path("apis", "batch", "v1", "namespaces", body["metadata"]["namespace"], "jobs")
        return self._create_once("Job", path, body, {403: None}, self.get_batch_job)

    # -------------------------------------------------------- BertTrainingJobs

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_or_none(API_GROUP, API_VERSION, PLURAL, namespace, name)

    def patch_job_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any] | None:
        """Merge `status` into the job's status subresource (a job start's write: JsonWrites); None if the job is gone."""
        path = self.writes.path("apis", API_GROUP, API_VERSION, "namespaces", namespace, PLURAL, name, "status")
        try:
            return json.loads(self._call("patch", lambda: self.writes.send(
                "PATCH", path, {"status": status}, "application/merge-patch+json"), expected=frozenset({404})))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list_warning_events(self, namespace: str) -> list[dict[str, Any]]:
        """Warning Events of a namespace, newest information included (the reconciler filters by object)."""
        def read() -> list[dict[str, Any]]:
            answer = self._call("list", lambda: self.core.list_namespaced_event(namespace, field_selector="type=Warning",
                                                                           _preload_content=False))
            return list(json.loads(answer.data).get("items") or [])

        return courtesy_read(f"Warning Events of {namespace}", read)

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A pod's metadata (labels, uid) as the API server has it; None if there is no such pod."""
        return self._read_or_none(lambda: self.core.read_namespaced_pod(name, namespace, _preload_content=False))

    # ------------------------------------------------ policies and namespaces

    def list_policies(self) -> list[dict[str, Any]]:
        """Every BertTrainingPolicy; none when the policy CRD is not installed (404)."""
        try:
            answer = self._call("list", lambda: self.custom.list_cluster_custom_object(API_GROUP, API_VERSION, POLICY_PLURAL),
                                expected=frozenset({404}))
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise
        return list(answer.get("items") or [])

    def patch_policy_status(self, name: str, status: dict[str, Any]) -> dict[str, Any] | None:
        """Merge a policy's status; None if the policy is gone."""
        try:
            return self._call("patch", lambda: self.custom.patch_cluster_custom_object_status(
                API_GROUP, API_VERSION, POLICY_PLURAL, name, {"status": status}), expected=frozenset({404}))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list_namespace_labels(self) -> dict[str, dict[str, str]]:
        """Every namespace's labels, by name."""
        answer = self._call("list", lambda: self.core.list_namespace(_preload_content=False))
        return {item["metadata"]["name"]: dict(item["metadata"].get("labels") or {})
                for item in json.loads(answer.data).get("items") or []}

    # --------------------------------------------------------- authentication

    def review_token(self, token: str, audience: str) -> dict[str, Any]:
        """The API server's verdict on a bearer token (TokenReview), as a dict."""
        review = kubernetes.client.V1TokenReview(spec=kubernetes.client.V1TokenReviewSpec(token=token, audiences=[audience]))
        # Decoded here: the generated model insists on fields (spec.token) an answer need not echo.
        answer = self._call("create", lambda: self.auth.create_token_review(review, _preload_content=False))
        return json.loads(answer.data).get("status") or {}

"""What one operator process holds: clients, the reconciler, known jobs, and the work queue.

Watch events reconcile their job at once (kopf's handlers, serialised per job by the reconciler's lock). Everything
else that must reconcile a job goes through one keyed work queue (workqueue.py) and its worker thread: a restart
whose backoff is over, the jobs waiting for a producer that changed phase or went away, and the periodic resync.
The queue keeps each job once however often it is asked for, and never hands one job to two workers at once.

`jobs` is the one place this process keeps jobs: the latest body the watch brought, with the status each reconcile
returns (the reconciler never writes into a body it is given) kept in it by :meth:`Runtime.keep`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import functools
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import kopf
import kubernetes

from . import dependencies
from . import reasons
from .config import OperatorSettings
from .events import EventRecorder
from .kube import KubeApi, load_config
from .metrics import JOBS_BY_PHASE
from .policy_cache import PolicyCache, policy_statuses
from .progress import ProgressEndpoint, staleness_patch
from bert_common.contract import utc_now
from .reconcile import Reconciled, Reconciler
from .reconcile.recovery import RecoverySettings, seconds_until_due
from .render import RenderSettings, prepare
from .templates.catalog import Catalog
from .templates.watch import TemplateWatch
from .training_metrics import TrainingMetrics
from .workqueue import WorkQueue

log = logging.getLogger(__name__)


def plain(value: Any) -> Any:
    """A deep copy of kopf's body views as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def own(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A watch event's object as this process keeps it. kopf's raw event object is plain JSON already (its Body is a
    view on it) and each event has its own, parsed from the stream; the runtime only ever replaces a top-level key
    of a body it keeps (its status, Runtime.keep), never changes what is inside one, so a copy of the top level is a
    body of our own. (A deep copy of every event cost about as much as the rest of handling it.)"""
    return dict(raw)


@dataclass
class Runtime:
    settings: OperatorSettings
    client: kubernetes.client.ApiClient
    api: KubeApi
    reconciler: Reconciler
    progress: ProgressEndpoint
    policies: PolicyCache
    #: Each job's training gauges: they follow every status the reconciler writes, and come back from a job's status
    #: when this process first sees it.
    training: TrainingMetrics = field(default_factory=TrainingMetrics)
    jobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: Reconciles no watch event asks for (restarts due, dependents, the resync), by job; its workers take them.
    queue: WorkQueue[tuple[str, str]] = field(default_factory=WorkQueue)
    #: The platform's job templates (the labelled ConfigMaps of settings.templates_namespace, from their watch).
    templates: Catalog = field(default_factory=Catalog)

    #: The status last written to each policy, so a resync writes only what changed.
    policy_statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: (namespace, producer) -> the jobs that have not started and wait for its outputs (bert_operator.dependencies).
    dependents: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    #: Where the watch handlers' reconciles run (kopf's executor, set when the operator starts); None: the loop's own.
    executor: concurrent.futures.Executor | None = None
    #: The reconciles the jobs' watch handler runs in a thread now, by job (reconcile_off_loop); read on the loop only.
    _reconciling: dict[tuple[str, str], asyncio.Future[Any]] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: OperatorSettings) -> "Runtime":
        client = load_config(settings.kubeconfig)
        prepare()  # the MPIJob template compiled now, not in the first job start
        api = KubeApi(client)
        policies = PolicyCache(api)
        training = TrainingMetrics()
        reconciler = Reconciler(
            api=api,
            events=EventRecorder(api),
            render_settings=RenderSettings(default_image=settings.trainer_image, progress_url=settings.progress_url,
                                           nccl_debug=settings.nccl_debug, progress_ca=settings.progress_ca(),
                                           pod_security=settings.pod_security),
            recovery=RecoverySettings(settings.restart_backoff_seconds, settings.restart_backoff_max_seconds),
            policies=policies.input_for,
            status_written=training.follow,
        )
        runtime = cls(settings, client, api, reconciler, ProgressEndpoint(api, reconciler, utc_now), policies, training)
        reconciler.jobs = runtime.known  # producers of a job that waits: the watch cache, else one read
        reconciler.templates = runtime.templates.snapshot
        return runtime

    def watch_templates(self) -> TemplateWatch | None:
        """Start following the platform's job templates (settings.templates_namespace), if it has one."""
        if not self.settings.templates_namespace:
            return None
        watch = TemplateWatch(self.client, self.settings.templates_namespace, self.templates, self.templates_changed)
        watch.start()
        return watch

    def templates_changed(self) -> None:
        """The job templates changed: the jobs waiting for one look again. (Every other job reads the catalog when it
        next makes an MPIJob; a change never touches a stage already made.)"""
        for (namespace, name), job in list(self.jobs.items()):
            if _waits_for_templates(job):
                self.queue.add((namespace, name))

    def connection_info(self) -> kopf.ConnectionInfo:
        """The client's credentials in kopf's terms, so both speak to the API server as the same identity."""
        config = self.client.configuration
        authorization = (config.api_key or {}).get("authorization") or (config.api_key or {}).get("BearerToken")
        token = authorization.split(" ", 1)[-1] if authorization else None
        return kopf.ConnectionInfo(
            server=config.host, ca_path=config.ssl_ca_cert, insecure=not config.verify_ssl,
            token=token, certificate_path=config.cert_file, private_key_path=config.key_file,
        )

    async def off_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` in a handler thread (blocking API calls must not stall kopf's loop), awaited."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args))

    async def reconcile_off_loop(self, body: dict[str, Any]) -> dict[str, Any]:
        """:meth:`reconcile` in a handler thread, awaited; until it ends, :meth:`settled` on the job waits for it."""
        meta = body["metadata"]
        key = (meta.get("namespace", "default"), meta["name"])
        running = asyncio.ensure_future(self.off_loop(self.reconcile, body))
        self._reconciling[key] = running
        try:
            return await running
        finally:
            if self._reconciling.get(key) is running:
                del self._reconciling[key]

    async def settled(self, namespace: str, name: str) -> None:
        """Return once no reconcile of the job started by :meth:`reconcile_off_loop` runs (whether it succeeded or
        not): what a handler thread would wait for on the job's lock, waited for on the loop instead."""
        while (running := self._reconciling.get((namespace, name))) is not None:
            await asyncio.wait([running])

    # The latest body of every job this process has seen (the watch keeps it fresh).
    def remember(self, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        key = (meta.get("namespace", "default"), meta["name"])
        if key not in self.jobs:  # first seen (as on every job after a restart): its gauges come back from its status
            self.training.restore(*key, body.get("status") or {})
        self.jobs[key] = body
        self._index_dependent(key, body)
        return body

    def _index_dependent(self, key: tuple[str, str], body: dict[str, Any]) -> None:
        """Index a job under each producer it waits for (entries go when the producer wakes them: a stale one only
        costs a reconcile that finds nothing to do)."""
        status = body.get("status") or {}
        if status.get("resolved") or status.get("phase") in ("Succeeded", "Failed"):  # waits for nobody
            return
        namespace, name = key
        for producer in dependencies.producer_names(body.get("spec") or {}):
            self.dependents.setdefault((namespace, producer), set()).add(name)

    def wake_dependents(self, namespace: str, producer: str) -> None:
        """Queue the jobs waiting for `producer` (it changed phase, or was deleted): no watch event of theirs says so.
        Queued, not reconciled here: a chain of dependents is walked one job at a time by the worker, not recursed."""
        for name in sorted(self.dependents.pop((namespace, producer), set())):
            self.queue.add((namespace, name))

    def forget(self, namespace: str, name: str) -> None:
        self.jobs.pop((namespace, name), None)
        self.reconciler.forget(namespace, name)
        self.training.forget(namespace, name)
        self.queue.discard((namespace, name))

    def reconcile(self, body: dict[str, Any], observed: dict[str, Any] | None = None) -> dict[str, Any]:
        """Reconcile a job now, and again when a restart it waits for is due (no watch event will say so); when its
        phase changed, the jobs waiting for its outputs (its Succeeded or Failed is what they wait for). Returns the
        job with the status the reconcile left."""
        before = (body.get("status") or {}).get("phase")
        meta = body["metadata"]
        with self.reconciler.lock(meta.get("namespace", "default"), meta["name"]):  # kept in the order they ran
            body = self.keep(body, self.reconciler.reconcile(body, observed))
        self._wake_for_restart(body)
        if (body.get("status") or {}).get("phase") != before:
            self.wake_dependents(meta.get("namespace", "default"), meta["name"])
        return body

    def keep(self, body: dict[str, Any], result: Reconciled | None) -> dict[str, Any]:
        """The job with the status a reconcile (or a recorded report) returned, kept in `jobs` in place of `body`
        unless a newer watch event replaced `body` meanwhile (that one is the job now, and its own reconcile reads
        the reconciler's latest status). The caller holds the job's lock."""
        if result is None:
            return body
        kept = {**body, "status": result.status}
        meta = body["metadata"]
        key = (meta.get("namespace", "default"), meta["name"])
        if self.jobs.get(key) is body:
            self.jobs[key] = kept
        return kept

    def _wake_for_restart(self, body: dict[str, Any]) -> None:
        """Queue the job for when the restart it waits for is due (no watch event will say so)."""
        now = datetime.datetime.now(tz=datetime.timezone.utc)
        delay = seconds_until_due(body.get("status") or {}, now, self.reconciler.recovery)
        if delay is not None:
            meta = body["metadata"]
            self.queue.add((meta.get("namespace", "default"), meta["name"]), delay + 1.0)  # +1 s: status times are to the second

    def process(self, key: tuple[str, str]) -> None:
        """One queued job: reconcile it, flag stale progress, and keep it indexed under the producers it still waits
        for. A failure is logged; the next resync queues the job again."""
        namespace, name = key
        body = self.jobs.get(key)
        if body is None:  # deleted since it was queued
            return
        try:
            body = self.reconcile(body)
            now = datetime.datetime.now(tz=datetime.timezone.utc)
            patch = staleness_patch(body.get("status") or {}, now, self.settings.progress_stale_seconds)
            if patch:
                with self.reconciler.lock(namespace, name):
                    body = self.keep(body, self.reconciler.record(body, patch))
        except Exception:
            log.exception("queued reconcile failed job=%s/%s", namespace, name)
        self._index_dependent(key, body)  # still waiting: keep it in the index

    def work(self) -> None:
        """The worker: take due jobs off the queue until it is shut down."""
        while True:
            key = self.queue.get()
            if key is None:
                return
            try:
                self.process(key)
            finally:
                self.queue.done(key)

    def start_workers(self, count: int = 4) -> list[threading.Thread]:
        """Workers taking jobs off the queue: several, so one job's slow API calls (retries back off for seconds)
        do not hold up another's restart; the queue never hands one job to two of them."""
        workers = [threading.Thread(target=self.work, name=f"bertoperator-queue-{i}", daemon=True) for i in range(count)]
        for worker in workers:
            worker.start()
        return workers

    def known(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.jobs.get((namespace, name))
        if found is None:
            found = self.api.get_job(namespace, name)
            if found is not None:
                self.remember(found)
        return found

    def resync_once(self) -> None:
        """Safety net for missed watch events: queue every job (the worker reconciles it and flags stale progress),
        write the policies' statuses, and count the jobs by phase."""
        for key in list(self.jobs):
            self.queue.add(key)
        self.write_policy_statuses()
        self.training.retain(lambda key: key in self.jobs)  # a status write that raced a deletion re-exported it
        phases = Counter((body.get("status") or {}).get("phase") or "Pending" for body in self.jobs.values())
        for phase in ("Pending", "Queued", "Created", "Running", "Restarting", "Suspended", "Succeeded", "Failed"):
            JOBS_BY_PHASE.labels(phase=phase).set(phases.get(phase, 0))

    def write_policy_statuses(self) -> None:
        """Each policy's status (namespaces and jobs it selects, conflicts, validity), written when it changed."""
        jobs = Counter(namespace for namespace, _ in self.jobs)
        try:
            statuses = policy_statuses(self.policies.snapshot(), lambda namespace: jobs[namespace])
        except Exception:  # policies unreadable: the next resync tries again
            log.exception("policy statuses failed")
            return
        for name, status in sorted(statuses.items()):
            if self.policy_statuses.get(name) == status:
                continue
            try:
                if self.api.patch_policy_status(name, status) is not None:
                    self.policy_statuses[name] = status
            except Exception:
                log.exception("policy status failed policy=%s", name)
        for gone in set(self.policy_statuses) - set(statuses):
            self.policy_statuses.pop(gone, None)

    async def resync_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.settings.resync_seconds)
            await loop.run_in_executor(None, self.resync_once)


def _waits_for_templates(job: dict[str, Any]) -> bool:
    """Whether a job's Ready condition says it waits for a template (a policy may force one its spec does not name)."""
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("reason") == reasons.TEMPLATE_UNAVAILABLE for c in conditions
               if isinstance(c, dict))

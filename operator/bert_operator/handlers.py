"""kopf registrations only: each handler hands its event to the runtime in a line or two.

Low-level event handlers (not on.create/on.update) on purpose: they keep no
state in annotations and add no finalizers, so a job start costs exactly the
writes the reconciler makes (MPIJob, status, Event), and all state lives in
the job's status where users can read it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
import prometheus_client

from . import webhook
from .kopf_storage import NoDiffBase
from .api.policy import POLICY_PLURAL
from .api.presets import API_GROUP, API_VERSION, PLURAL
from .metrics import publish_build_info
from .kube import ISVC_GROUP, ISVC_PLURAL, ISVC_VERSION, MPI_GROUP, MPI_PLURAL, MPI_VERSION
from bert_common.contract import JOB_NAME_LABEL
from .runtime import Runtime, own, plain

log = logging.getLogger(__name__)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    settings.peering.standalone = True
    settings.posting.enabled = False  # Events are the reconciler's, with reasons users can filter on
    settings.persistence.diffbase_storage = NoDiffBase()  # read only by change handlers; there are none
    settings.execution.max_workers = runtime.settings.workers
    runtime.executor = settings.execution.executor  # the watch handlers' reconciles run there (Runtime.off_loop)
    settings.watching.server_timeout = 300
    settings.watching.reconnect_backoff = 1.0
    if runtime.settings.webhook_port:
        settings.admission.server = webhook.server(runtime.settings.webhook_port, runtime.settings.webhook_cert_dir)
    if runtime.settings.metrics_port:
        publish_build_info(runtime.settings.trainer_image)
        prometheus_client.start_http_server(runtime.settings.metrics_port)
    memo.progress_runner, _site = await runtime.progress.serve("0.0.0.0", runtime.settings.progress_port,
                                                           runtime.settings.progress_ssl())
    memo.resync_task = asyncio.create_task(runtime.resync_forever())
    memo.templates_watch = runtime.watch_templates()  # a namespaced watch of its own (templates/watch.py says why)
    runtime.start_workers()
    log.info("operator started namespaces=%s image=%s", ",".join(runtime.settings.namespaces) or "*",
             runtime.settings.trainer_image)


@kopf.on.login()
def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    """kopf uses the same credentials as the reconciler's client (in-cluster or --kubeconfig)."""
    return memo.runtime.connection_info()


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    memo.resync_task.cancel()
    if memo.templates_watch is not None:
        memo.templates_watch.stop()
    memo.runtime.queue.shutdown()
    await memo.progress_runner.cleanup()


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
async def job_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A coroutine: most of a job's events need no reconcile (each status write of ours comes back as one) and are
    answered on kopf's loop in a few dictionary look-ups, not in a hop to a handler thread and back; a reconcile
    (blocking API calls) runs in kopf's executor, as a synchronous handler would (Runtime.off_loop)."""
    runtime: Runtime = memo.runtime
    namespace, name = body.metadata.namespace or "default", body.metadata.name
    if event["type"] == "DELETED":
        runtime.forget(namespace, name)
        runtime.wake_dependents(namespace, name)  # a job waiting for this one fails, saying so
        return
    job = runtime.remember(own(event["object"]))
    # Our own status writes come back as MODIFIED events; they carry nothing new. MPIJob changes
    # arrive through mpijob_event, missed ones through the resync.
    if not runtime.reconciler.is_current(job):
        await runtime.reconcile_off_loop(job)  # (which wakes the jobs waiting for this one when its phase changes)


@kopf.on.event(MPI_GROUP, MPI_VERSION, MPI_PLURAL, labels={JOB_NAME_LABEL: kopf.PRESENT})
async def mpijob_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A coroutine too: the MPIJob a job's reconcile has just created comes back while that reconcile still writes
    the job's status and Event. It waits for that reconcile here, on the loop (a thread would wait for the job's
    lock, idle, one of the few), and is then answered without a thread when the job's last plan went on exactly
    this MPIJob (the create's answer); anything else is reconciled in kopf's executor."""
    runtime: Runtime = memo.runtime
    namespace, job_name = body.metadata.namespace or "default", body.metadata.labels[JOB_NAME_LABEL]
    await runtime.settled(namespace, job_name)
    if event["type"] != "DELETED" and runtime.reconciler.echoes_last_plan(namespace, job_name, own(event["object"])):
        return
    await runtime.off_loop(mpijob_changed, runtime, namespace, job_name, event["type"], own(event["object"]))


def mpijob_changed(runtime: Runtime, namespace: str, job_name: str, kind: str, mpijob: dict[str, Any]) -> None:
    """An MPIJob of a job changed or went away: the job is reconciled on it (read first if this process has not
    seen it yet)."""
    job = runtime.known(namespace, job_name)
    if job is None:
        return
    if kind == "DELETED":  # gone: a job waiting for it (or missing it) reads again and goes on
        runtime.reconcile(job)
    else:
        runtime.reconcile(job, observed=mpijob)


@kopf.on.event(ISVC_GROUP, ISVC_VERSION, ISVC_PLURAL, labels={JOB_NAME_LABEL: kopf.PRESENT})
async def inference_service_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A served job's InferenceService changed (KServe's controller sets its conditions and URL) or went away: the job
    is reconciled, which reads it and follows it in status.serving. Without KServe installed kopf serves nothing here
    (it watches CRDs, and starts this watch when KServe's is created)."""
    runtime: Runtime = memo.runtime
    namespace, job_name = body.metadata.namespace or "default", body.metadata.labels[JOB_NAME_LABEL]
    await runtime.settled(namespace, job_name)
    await runtime.off_loop(inference_service_changed, runtime, namespace, job_name)


def inference_service_changed(runtime: Runtime, namespace: str, job_name: str) -> None:
    job = runtime.known(namespace, job_name)
    if job is not None:
        runtime.reconcile(job)


@kopf.on.event(API_GROUP, API_VERSION, POLICY_PLURAL)
def policy_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.runtime.policies.policy_event(event["type"], plain(body))


@kopf.on.event("", "v1", "namespaces")
def namespace_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.runtime.policies.namespace_event(event["type"], plain(body))
    memo.runtime.reconciler.namespace_event(event["type"], plain(body))  # a namespace being deleted: its jobs go too


def register_webhook(registry: kopf.OperatorRegistry | None = None) -> None:
    """The validating admission handlers (jobs, policies), registered only when the webhook is served (kopf
    refuses admission handlers without a server). Status writes (the /status subresource) are not validated."""
    kopf.on.validate(API_GROUP, API_VERSION, PLURAL, id=webhook.HANDLER_ID, operations=["CREATE", "UPDATE"],
                     registry=registry)(webhook.validate_job)
    kopf.on.validate(API_GROUP, API_VERSION, POLICY_PLURAL, id=webhook.POLICY_HANDLER_ID, operations=["CREATE", "UPDATE"],
                     registry=registry)(webhook.validate_policy)

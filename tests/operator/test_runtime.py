"""The operator's Runtime: which reconciles go through the work queue (restarts due, dependents, the resync), with
a reconciler that records what it is asked and a queue on a clock the test turns."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import datetime
import threading
from types import SimpleNamespace
from typing import Any

import kopf

from bert_common.contract import format_utc
from bert_operator.handlers import job_event, mpijob_event
from bert_operator.reconcile import Reconciled
from bert_operator.reconcile import Reconciler as RealReconciler
from bert_operator.reconcile.recovery import RecoverySettings, due_at
from bert_operator.runtime import Runtime
from bert_operator.workqueue import WorkQueue
from tests.operator.fakes import GLUE, NOW, FakeCluster
from tests.operator.fakes import job as fake_job


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


class Reconciler:
    """Answers each job's phase from `phases` (name -> phase) and records the order it was asked in; as the real one,
    it writes into no body it is given (the runtime keeps what it returns)."""

    def __init__(self) -> None:
        self.recovery = RecoverySettings()
        self.phases: dict[str, str] = {}
        self.calls: list[str] = []

    def reconcile(self, body: dict[str, Any], observed: dict[str, Any] | None = None) -> Reconciled:
        name = body["metadata"]["name"]
        self.calls.append(name)
        if name in self.phases:
            return Reconciled({**(body.get("status") or {}), "phase": self.phases[name]}, written=True)
        return Reconciled(body.get("status") or {}, written=False)

    def lock(self, namespace: str, name: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def record(self, body: dict[str, Any], patch: dict[str, Any]) -> Reconciled:
        return Reconciled({**(body.get("status") or {}), **patch}, written=True)

    def forget(self, namespace: str, name: str) -> None:
        pass


def runtime() -> tuple[Runtime, Reconciler, Clock]:
    clock, reconciler = Clock(), Reconciler()
    policies = SimpleNamespace(snapshot=lambda: (_ for _ in ()).throw(RuntimeError("no policies here")))
    built = Runtime(settings=SimpleNamespace(progress_stale_seconds=600), client=None, api=None,  # type: ignore[arg-type]
                    reconciler=reconciler, progress=None, policies=policies, queue=WorkQueue(clock))  # type: ignore[arg-type]
    return built, reconciler, clock


def job(name: str, fed_by: str | None = None, status: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"task": {"pretrain": {}}}
    if fed_by:
        spec["dataset"] = {"fromJob": fed_by}
    return {"metadata": {"namespace": "ns", "name": name}, "spec": spec, "status": status or {}}


def drain(built: Runtime) -> None:
    while (key := built.queue.take()) is not None:
        try:
            built.process(key)
        finally:
            built.queue.done(key)


def test_a_producer_changing_phase_queues_its_dependents_without_recursing_into_them() -> None:
    built, reconciler, _ = runtime()
    for body in (job("data"), job("pretrain", fed_by="data"), job("finetune", fed_by="pretrain")):
        built.remember(body)
    reconciler.phases = {"data": "Succeeded", "pretrain": "Succeeded"}
    built.reconcile(built.jobs[("ns", "data")])
    assert built.jobs[("ns", "data")]["status"]["phase"] == "Succeeded"  # what the reconcile returned, kept
    assert reconciler.calls == ["data"] and set(built.queue.queued()) == {("ns", "pretrain")}  # queued, not reconciled
    drain(built)  # pretrain succeeds in turn: its own dependent is queued and taken by the same worker
    assert reconciler.calls == ["data", "pretrain", "finetune"] and built.queue.queued() == {}


def test_a_deleted_producer_queues_its_dependents_and_a_deleted_job_leaves_the_queue() -> None:
    built, reconciler, _ = runtime()
    built.remember(job("consumer", fed_by="gone"))
    built.wake_dependents("ns", "gone")
    built.forget("ns", "consumer")
    assert built.queue.queued() == {}
    drain(built)
    assert reconciler.calls == []


def restarting(at: datetime.datetime) -> dict[str, Any]:
    return {"phase": "Restarting", "stages": [{"name": "phase1", "phase": "Restarting", "restarts": 1,
                                               "restartedMpiJobUid": "u1", "lastRestartTime": format_utc(at)}]}


def test_a_restart_waiting_out_its_backoff_is_queued_for_when_it_is_due() -> None:
    built, reconciler, clock = runtime()
    now = datetime.datetime.now(tz=datetime.timezone.utc).replace(microsecond=0)
    body = built.remember(job("evicted", status=restarting(now)))
    built.reconcile(body)
    backoff = (due_at(body["status"]["stages"][0], reconciler.recovery) - now).total_seconds()
    assert backoff > 0 and list(built.queue.queued()) == [("ns", "evicted")]
    clock.now += backoff  # (+1 s: status times are to the second)
    assert built.queue.take() is None
    clock.now += 1.0
    drain(built)
    assert reconciler.calls == ["evicted", "evicted"]
    overdue = built.remember(job("overdue", status=restarting(now - datetime.timedelta(days=1))))
    built.reconcile(overdue)
    clock.now += 1.0
    assert built.queue.take() == ("ns", "overdue")


def test_the_resync_queues_every_job_once_and_flags_stale_progress() -> None:
    built, reconciler, _ = runtime()
    stale = {"phase": "Running", "stages": [{"name": "phase1", "phase": "Running", "startTime": "2000-01-01T00:00:00Z"}],
             "progress": {"updatedAt": "2000-01-01T00:00:00Z"}, "currentStage": "phase1"}
    built.remember(job("a", status=stale))
    built.remember(job("b"))
    built.resync_once()
    built.resync_once()  # a second resync before the worker ran adds nothing
    assert sorted(built.queue.queued()) == [("ns", "a"), ("ns", "b")]
    drain(built)
    assert sorted(reconciler.calls) == ["a", "b"]
    assert any(c.get("reason") == "Stale" for c in built.jobs[("ns", "a")]["status"].get("conditions", []))


class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    """kopf's executor for the handlers' reconciles, counting what is handed to it."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def test_a_jobs_watch_event_with_nothing_to_do_is_answered_on_the_loop_and_a_change_in_a_handler_thread() -> None:
    """Our own status write coming back (status current for the generation) needs no reconcile: the handler keeps the
    body and returns without a thread; a new job, or a new generation, is reconciled in kopf's executor."""
    built, reconciler, _ = runtime()
    reconciler.is_current = RealReconciler.is_current  # type: ignore[attr-defined]
    built.executor = executor = CountingExecutor()

    def event(kind: str, body: dict[str, Any]) -> None:
        asyncio.run(job_event(event={"type": kind, "object": body}, body=kopf.Body(body), memo=kopf.Memo(runtime=built)))

    new = {**job("a"), "metadata": {"namespace": "ns", "name": "a", "generation": 1}}
    try:
        event("ADDED", new)
        assert reconciler.calls == ["a"] and executor.submitted == 1
        echo = {**new, "status": {"phase": "Pending", "stages": [{"name": "phase1"}], "observedGeneration": 1},
                "metadata": {**new["metadata"], "resourceVersion": "2"}}
        event("MODIFIED", echo)
        assert reconciler.calls == ["a"] and executor.submitted == 1
        assert built.jobs[("ns", "a")] == echo  # the latest body is kept all the same
        changed = {**echo, "metadata": {**echo["metadata"], "generation": 2}}
        event("MODIFIED", changed)
        assert reconciler.calls == ["a", "a"] and executor.submitted == 2
        event("DELETED", changed)
        assert ("ns", "a") not in built.jobs and executor.submitted == 2
    finally:
        executor.shutdown()


def test_the_mpijob_a_reconcile_created_coming_back_waits_for_that_reconcile_on_the_loop_and_takes_no_thread() -> None:
    """The watch brings a job's new MPIJob while the reconcile that created it still writes the job's status: the
    handler waits for that reconcile without holding a thread (the one here is busy with it), then finds the
    reconcile's plan went on exactly this MPIJob and returns; a change of the MPIJob is reconciled in a thread."""
    cluster = FakeCluster()
    gate = threading.Event()
    posted = cluster.post

    def post(*args: Any) -> None:  # the reconcile's last write (its Event) waits until the test lets it go
        gate.wait(timeout=30)
        posted(*args)

    cluster.post = post  # type: ignore[method-assign]
    reconciler = RealReconciler(api=cluster, events=cluster, clock=lambda: NOW)
    built = Runtime(settings=SimpleNamespace(), client=None, api=cluster, reconciler=reconciler,  # type: ignore[arg-type]
                    progress=None, policies=None)  # type: ignore[arg-type]
    built.executor = executor = CountingExecutor()
    new = fake_job(GLUE)
    memo = kopf.Memo(runtime=built)

    async def events() -> None:
        started = asyncio.create_task(job_event(event={"type": "ADDED", "object": new}, body=kopf.Body(new), memo=memo))
        while not cluster.mpijobs:  # the create is done; the Event is not
            await asyncio.sleep(0.01)
        (mpijob,) = copy.deepcopy(list(cluster.mpijobs.values()))
        echo = asyncio.create_task(mpijob_event(event={"type": "ADDED", "object": mpijob}, body=kopf.Body(mpijob),
                                                memo=memo))
        await asyncio.sleep(0.05)
        assert not echo.done() and executor.submitted == 1  # waiting for the reconcile, in no thread
        gate.set()
        await started
        await echo
        assert executor.submitted == 1 and cluster.events and len(cluster.status_patches) == 1
        running = {**mpijob, "status": {"conditions": [{"type": "Running", "status": "True"}]}}
        await mpijob_event(event={"type": "MODIFIED", "object": running}, body=kopf.Body(running), memo=memo)
        assert executor.submitted == 2

    try:
        asyncio.run(events())
    finally:
        gate.set()
        executor.shutdown()

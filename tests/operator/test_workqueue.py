"""The operator's keyed work queue (bert_operator/workqueue.py), on a clock the test turns by hand."""

from __future__ import annotations

import threading

from bert_operator.workqueue import WorkQueue


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_added_many_times_is_handed_out_once() -> None:
    queue: WorkQueue[str] = WorkQueue(Clock())
    for _ in range(3):
        queue.add("a")
    queue.add("b")
    assert queue.take() == "a" and queue.take() == "b" and queue.take() is None


def test_a_delayed_key_is_due_only_at_its_time_and_the_earliest_add_wins() -> None:
    clock = Clock()
    queue: WorkQueue[str] = WorkQueue(clock)
    queue.add("restart", delay=30)
    queue.add("restart", delay=60)  # later: the earlier stays
    assert queue.take() is None
    clock.now += 29.9
    assert queue.take() is None
    clock.now += 0.1
    assert queue.take() == "restart"
    queue.done("restart")
    queue.add("soon", delay=60)
    queue.add("soon", delay=5)  # sooner: it moves up
    clock.now += 5
    assert queue.take() == "soon"


def test_a_key_is_not_handed_out_while_processed_and_an_add_meanwhile_is_not_lost() -> None:
    queue: WorkQueue[str] = WorkQueue(Clock())
    queue.add("job")
    assert queue.take() == "job"
    queue.add("job")  # a change seen while the job is being reconciled
    assert queue.take() is None  # not to a second worker
    queue.done("job")
    assert queue.take() == "job"  # once more, after
    queue.done("job")
    assert queue.take() is None


def test_a_discarded_key_is_not_handed_out() -> None:
    queue: WorkQueue[str] = WorkQueue(Clock())
    queue.add("deleted", delay=10)
    queue.discard("deleted")
    assert queue.queued() == {}


def test_get_waits_for_an_add_and_shutdown_wakes_it() -> None:
    queue: WorkQueue[str] = WorkQueue()
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get(timeout=10)))
    worker.start()
    queue.add("now")
    worker.join(10)
    assert got == ["now"]
    waiting = threading.Thread(target=lambda: got.append(queue.get()))
    waiting.start()
    queue.shutdown()
    waiting.join(10)
    assert not waiting.is_alive() and got == ["now", None]

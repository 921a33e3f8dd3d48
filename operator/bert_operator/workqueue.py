"""A keyed work queue with delays: how the operator schedules the reconciles no watch event asks for.

Three things used to reconcile a job outside its watch events, each its own way: a `threading.Timer` per job for a
restart's backoff, a recursive call into the jobs waiting for a producer, and a resync that reconciled every job in
turn. They raced one another and the watch handlers, and a chain of dependents recursed as deep as it was long.
Now each adds the job's key here, and the operator's workers take keys off, as client-go's workqueue does for a controller:

- a key is queued once, however often it is added before it is taken (the earliest time asked for wins);
- a key is never handed out again while it is being processed; added meanwhile, it is handed out once more after
  :meth:`done` (so a change seen during a reconcile is not lost);
- a key can be added for later (`delay`): a restart's backoff (a failed reconcile waits for the next resync).

The clock is injected, so the tests drive time by hand.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Callable, Generic, Hashable, TypeVar

Key = TypeVar("Key", bound=Hashable)


class WorkQueue(Generic[Key]):
    """Keys due at a time on `clock` (seconds, monotonic); thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._cond = threading.Condition()
        self._due: dict[Key, float] = {}  # queued keys and when each is due
        self._heap: list[tuple[float, int, Key]] = []  # (due, order, key); entries superseded in _due are skipped
        self._order = itertools.count()
        self._processing: set[Key] = set()
        self._again: dict[Key, float] = {}  # added while processing: queued at done()
        self._closed = False

    def add(self, key: Key, delay: float = 0.0) -> None:
        """Queue `key` to be handed out `delay` seconds from now (sooner if it is queued for sooner already)."""
        at = self.clock() + max(0.0, delay)
        with self._cond:
            if self._closed:
                return
            if key in self._processing:
                self._again[key] = min(at, self._again.get(key, at))
                return
            if key in self._due and self._due[key] <= at:
                return
            self._due[key] = at
            heapq.heappush(self._heap, (at, next(self._order), key))
            self._cond.notify()

    def _pop_due(self, now: float) -> Key | None:
        while self._heap:
            at, _, key = self._heap[0]
            if self._due.get(key) != at:  # superseded by an earlier add, or already handed out
                heapq.heappop(self._heap)
                continue
            if at > now:
                return None
            heapq.heappop(self._heap)
            del self._due[key]
            self._processing.add(key)
            return key
        return None

    def take(self) -> Key | None:
        """A key that is due now, marked as being processed; None when none is (the tests' way: no waiting)."""
        with self._cond:
            return self._pop_due(self.clock())

    def get(self, timeout: float | None = None) -> Key | None:
        """Wait for a due key (at most `timeout` seconds); None on timeout or once the queue is shut down."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                key = self._pop_due(self.clock())
                if key is not None:
                    return key
                waits = [self._heap[0][0] - self.clock()] if self._heap else []
                if deadline is not None:
                    waits.append(deadline - time.monotonic())
                    if waits[-1] <= 0:
                        return None
                self._cond.wait(max(0.0, min(waits)) if waits else None)
            return None

    def done(self, key: Key) -> None:
        """Processing `key` ended: if it was added meanwhile, it is queued again (when it was asked for)."""
        with self._cond:
            self._processing.discard(key)
            again = self._again.pop(key, None)
        if again is not None:
            self.add(key, max(0.0, again - self.clock()))

    def discard(self, key: Key) -> None:
        """Forget a queued key (its job was deleted); one being processed ends as usual."""
        with self._cond:
            self._due.pop(key, None)
            self._again.pop(key, None)

    def queued(self) -> dict[Key, float]:
        """The queued keys and when each is due (what the tests look at)."""
        with self._cond:
            return dict(self._due)

    def shutdown(self) -> None:
        """Wake every waiting worker; no key is handed out any more."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

"""One writer per output location: the chief of every task holds its --output_dir exclusively.

Why in the trainer and not in the operator or local mode: two trainers on one output
(an orphan of a killed `bertjob`, a launcher restarted while the old pod still runs,
two jobs given the same output by mistake) both write ckpt-N, results.json and the
reports, and a later phase may read a checkpoint while it is rewritten. Only the
trainer sees every way it is started, so it is the trainer that refuses.

* A local (or PVC) folder: ``<output_dir>/.lock``, held with ``fcntl.flock`` for the
  whole run. The kernel releases it when the process ends, however it ends, so a
  lock is never stale. (On NFS, Linux maps flock to NFS byte-range locks.)
* ``s3://``: a lease object ``<output_dir>/.lease.json`` naming the run (id, task,
  host, pid), created with a conditional PUT (If-None-Match) so that of two starting
  writers exactly one wins, and renewed every ``renewSeconds`` (If-Match on its ETag).
  Its age is measured on the store's clock (Last-Modified against the response's Date).
  A second writer that finds a lease of another run refuses (exit 2, naming
  --output_dir and the holder) unless the lease expired (older than its
  ``ttlSeconds``), or its holder ran on this machine and is gone: then it takes the
  lease over (``event=lease_taken_over``). A lease whose holder stopped renewing is
  waited for until it expires (a restarted pod follows a killed one); a lease renewed
  lately means a live writer, refused at once. A holder that finds its lease taken
  over (it could not renew for a whole TTL) exits 1 at once: the output is no longer its.

Only the chief (rank 0) takes it: other ranks never write the output. Under Horovod
the ranks agree on the outcome so that all of them stop when the chief is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from typing import Callable, Iterator, Protocol

from bert_common.contract import utc_now
from bert_trainer import storage

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
LEASE_NAME = ".lease.json"
#: How long a lease stays valid without renewal, and how often its holder renews it.
LEASE_SECONDS = 60.0
RENEW_SECONDS = 15.0
#: 1, as the trainer exits on other storage failures.
EXIT_LEASE_LOST = 1


class OutputBusy(RuntimeError):
    """Another run holds --output_dir; the message names the holder."""

    flag = "output_dir"


class World(Protocol):
    size: int

    def allreduce_scalar(self, value: float) -> float: ...


@dataclasses.dataclass(frozen=True)
class Holder:
    """Who holds an output: what the lock file or lease object says."""

    run_id: str
    task: str
    host: str
    pid: int
    machine: str  # this kernel boot and pid namespace: equal values see the same pids
    since: str
    ttl_seconds: float = LEASE_SECONDS
    renew_seconds: float = RENEW_SECONDS

    @classmethod
    def me(cls, task: str) -> "Holder":
        return cls(uuid.uuid4().hex[:12], task, socket.gethostname(), os.getpid(), _machine(), utc_now())

    @classmethod
    def parse(cls, data: bytes) -> "Holder | None":
        try:
            d = json.loads(data)
            return cls(str(d["runId"]), str(d.get("task", "?")), str(d.get("host", "?")), int(d.get("pid", 0)),
                       str(d.get("machine", "")), str(d.get("since", "?")), float(d.get("ttlSeconds", LEASE_SECONDS)),
                       float(d.get("renewSeconds", RENEW_SECONDS)))
        except (ValueError, KeyError, TypeError):
            return None

    def to_json(self) -> bytes:
        return json.dumps({"runId": self.run_id, "task": self.task, "host": self.host, "pid": self.pid,
                           "machine": self.machine, "since": self.since, "ttlSeconds": self.ttl_seconds,
                           "renewSeconds": self.renew_seconds, "renewedAt": utc_now()}).encode()

    def describe(self) -> str:
        return f"run {self.run_id} ({self.task}, pid {self.pid} on {self.host}, since {self.since})"

    def gone(self) -> bool:
        """Whether this holder ran on this machine (same boot, same pid namespace) and has exited."""
        return bool(self.machine) and self.machine == _machine() and not _alive(self.pid)


def _machine() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            boot = fh.read().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return ""  # not Linux: a lease is then taken over only once it expires


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) holds nothing
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class LocalLock:
    """An exclusive flock on ``<output_dir>/.lock``, released by release() or by the process ending."""

    def __init__(self, output_dir: str, me: Holder) -> None:
        self.path = os.path.join(output_dir, LOCK_NAME)
        try:
            os.makedirs(output_dir, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise storage.StorageError(f"{self.path}: cannot create the output lock ({exc.strerror})") from exc
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Holder.parse(os.pread(self.fd, 4096, 0))
            os.close(self.fd)
            raise OutputBusy(f"{output_dir} is being written by another run: "
                             f"{holder.describe() if holder else 'a process holding ' + self.path}; "
                             "wait for it to end, or stop it") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, me.to_json(), 0)
        log.info("event=output_locked lock=%s run=%s", self.path, me.run_id)

    def release(self) -> None:
        """Unlock, leaving the file: unlinking it would let a third run lock a new file while a
        second still waits on the old one."""
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


class S3Lease:
    """The lease object ``<output_dir>/.lease.json``, taken in the constructor and renewed by a thread."""

    def __init__(self, output_dir: str, me: Holder, *, on_lost: Callable[[str], None] | None = None) -> None:
        self.output_dir, self.me = output_dir, me
        self.uri = storage.join(output_dir, LEASE_NAME)
        self.on_lost = on_lost or _exit_lost
        self.etag = self._take()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, daemon=True, name="lease-renewal")
        self._thread.start()

    def _take(self) -> str:
        announced_wait = False
        for _ in range(1000):  # each pass ends in a write, a refusal, or a bounded wait for an expiry
            current = storage.read_versioned(self.uri)
            if current is None:
                if etag := storage.write_if(self.uri, self.me.to_json(), etag=None):
                    log.info("event=lease_acquired lease=%s run=%s", self.uri, self.me.run_id)
                    return etag
                continue  # created by another run meanwhile: look at it
            holder = Holder.parse(current.data)
            why = self._takeover_reason(holder, current.age_seconds)
            if why is None:
                assert holder is not None
                if current.age_seconds < 2 * holder.renew_seconds:
                    raise OutputBusy(f"{self.output_dir} is being written by another run: {holder.describe()} "
                                     f"(lease {self.uri} renewed {current.age_seconds:.0f} s ago, valid for "
                                     f"{holder.ttl_seconds:.0f} s); wait for it to end, or stop it")
                remaining = holder.ttl_seconds - current.age_seconds
                if not announced_wait:
                    log.warning("event=lease_wait lease=%s holder=%s renewed_seconds_ago=%.0f expires_in=%.0f",
                                self.uri, holder.describe(), current.age_seconds, remaining)
                    announced_wait = True
                time.sleep(max(min(holder.renew_seconds, remaining), 0.5))
                continue
            if etag := storage.write_if(self.uri, self.me.to_json(), etag=current.etag):
                log.warning("event=lease_taken_over lease=%s run=%s reason=%s previous=%s", self.uri,
                            self.me.run_id, why, holder.describe() if holder else "unreadable")
                return etag
        raise OutputBusy(f"{self.output_dir}: the lease {self.uri} keeps changing hands; another run is starting")

    @staticmethod
    def _takeover_reason(holder: Holder | None, age: float) -> str | None:
        if holder is None:
            return "unreadable"
        if age >= holder.ttl_seconds:
            return f"expired ({age:.0f} s since renewal, ttl {holder.ttl_seconds:.0f} s)"
        if holder.gone():
            return f"holder_gone (pid {holder.pid} on this machine has exited)"
        return None

    def renew(self) -> bool:
        """Renew once; False when the lease is no longer ours (then on_lost has been called)."""
        try:
            current = storage.read_versioned(self.uri)
            if current is not None and current.etag != self.etag:
                holder = Holder.parse(current.data)
                self.on_lost(holder.describe() if holder else "an unreadable lease")
                return False
            etag = storage.write_if(self.uri, self.me.to_json(), etag=None if current is None else self.etag)
        except storage.StorageError as exc:
            log.warning("event=lease_renew_failed lease=%s error=%s", self.uri, exc)
            return True  # the store may be back before the lease expires
        if etag is None:
            self.on_lost("another run, which wrote it between our read and our write")
            return False
        self.etag = etag
        return True

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.me.renew_seconds):
            if not self.renew():
                return

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours; a failure only leaves it to expire."""
        self._stop.set()
        self._thread.join()
        try:
            current = storage.read_versioned(self.uri)
            if current is not None and current.etag == self.etag:
                storage.delete(self.uri)
                log.info("event=lease_released lease=%s run=%s", self.uri, self.me.run_id)
        except storage.StorageError as exc:
            log.warning("event=lease_release_failed lease=%s error=%s", self.uri, exc)


def _exit_lost(holder: str) -> None:
    """The lease was taken over: another run owns the output now, so stop writing at once."""
    log.error("event=lease_lost holder=%s; exiting so that one run writes the output", holder)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(EXIT_LEASE_LOST)


def acquire(output_dir: str, task: str) -> LocalLock | S3Lease:
    """This process's exclusive hold on `output_dir` (LocalLock or S3Lease); OutputBusy when another run has it."""
    me = Holder.me(task)
    return S3Lease(output_dir, me) if storage.is_s3(output_dir) else LocalLock(output_dir, me)


@contextlib.contextmanager
def hold(output_dir: str, *, task: str, chief: bool, world: World | None = None) -> Iterator[None]:
    """Hold `output_dir` for the block (the chief only); with a Horovod `world` of several ranks,
    every rank raises when the chief could not take it, so none is left waiting in a collective."""
    held, failure = None, None
    if chief:
        try:
            held = acquire(output_dir, task)
        except Exception as exc:  # noqa: BLE001 - re-raised below, after the ranks agreed
            failure = exc
    if world is not None and world.size > 1:
        if world.allreduce_scalar(1.0 if failure else 0.0) > 0 and failure is None:
            failure = OutputBusy(f"{output_dir}: rank 0 could not take the output (its error says why)")
    if failure is not None:
        raise failure
    try:
        yield
    finally:
        if held is not None:
            held.release()

"""Graceful stop on SIGTERM or SIGINT: finish the step in flight, checkpoint it, exit 143.

Why: Kubernetes sends SIGTERM before it kills a pod (delete, preemption, node
drain) and `bertjob run --local` turns Ctrl-C into SIGTERM. Saving at the step
reached means a restart loses nothing, instead of going back to the last
periodic checkpoint. The handler only sets a flag; the training loop decides
where it is safe to stop (between optimizer steps, never inside one).
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Callable

#: 128 + SIGTERM, what a shell and Kubernetes report for a process stopped by SIGTERM.
EXIT_STOPPED = 143

_requested = threading.Event()
log = logging.getLogger(__name__)


class Stopped(Exception):
    """Training stopped on request at `step`; `checkpoint` is where its state was saved."""

    def __init__(self, step: int, checkpoint: str | None) -> None:
        super().__init__(f"stopped at step {step}; checkpoint {checkpoint}")
        self.step = step
        self.checkpoint = checkpoint


def _handler(signum: int, _frame: object) -> None:
    _requested.set()


def install() -> None:
    """Route SIGTERM and SIGINT to the stop flag (main thread only, as `signal` requires)."""
    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)


def requested() -> bool:
    return _requested.is_set()


def agreed(world) -> bool:
    """Whether any rank was asked to stop, decided by all ranks together.

    Ranks must stop after the same step, or the ones still training would wait
    forever in the next allreduce; one scalar allreduce per step settles it.
    """
    mine = 1.0 if _requested.is_set() else 0.0
    return (world.allreduce_scalar(mine) if world.size > 1 else mine) > 0.0


def stop_if_asked(world, step: int, *, saved: str | None, save_now: Callable[[], str | None] | None) -> None:
    """The stop protocol every training loop follows after an optimizer step.

    When any rank was asked to stop: the chief checkpoints `step` with `save_now` (None when the
    step was just checkpointed, `saved` being that checkpoint), every rank waits for it, then all
    raise Stopped together. Otherwise returns at once.
    """
    if not agreed(world):
        return
    if world.is_chief and save_now is not None:
        saved = save_now()
    world.barrier()
    log.warning("event=stopped step=%d checkpoint=%s", step, saved)
    raise Stopped(step, saved)

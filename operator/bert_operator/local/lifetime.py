"""Stage processes that die with `bertjob`: no orphan trainer after `kill -9` of the runner.

Stages start in their own session (so Ctrl-C in the terminal reaches only `bertjob`,
which stops them with SIGTERM and a checkpoint). A session of its own also means
that nothing kills them when `bertjob` itself is killed: the trainer went on alone,
and a rerun started a second one on the same output folder. On Linux the child
asks the kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``),
set between fork and exec by ``preexec_fn``.

Why SIGKILL rather than SIGTERM: `bertjob` stops its stages with SIGTERM itself whenever
it can (Ctrl-C); the parent-death signal is for when it could not, because it was
killed, and a trainer that spent a minute checkpointing alone would still hold its
output when the user reruns. Its last periodic checkpoint is the resume point, as after
any kill.

Linux only: elsewhere (macOS has no PR_SET_PDEATHSIG) stages are started as before,
and the trainer's own output lock keeps a rerun from writing beside an orphan.
The kernel sends the signal when the *thread* that forked the child ends, so the
thread that starts a stage must be the one that waits for it (LocalStages does so).
Under mpirun (``--processes N``) this covers mpirun itself; its ranks are Open MPI's
to stop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from typing import Callable

PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once in the parent: the child runs no import or lookup between fork
    and exec (another thread could hold a lock there that the child would wait on for ever)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when this process dies, or None where the
    kernel cannot do that. Also closes the race of a parent that died before the call: the child
    then kills itself, as the signal would have."""
    if _PRCTL is None:
        return None
    prctl, parent = _PRCTL, os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec

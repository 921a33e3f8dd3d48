"""Why a stage's MPIJob failed: the infrastructure (restart it) or the job itself (never), as a pure function.

The MPI Operator says little: an evicted worker fails the whole MPIJob with reason ``MPIJobEvicted``, and any
other end of the launcher Job is ``MPIJobFailed`` with the Job's message. The pods say the rest, as long as
they exist (``cleanPodPolicy: Running`` keeps failed pods): a ``DisruptionTarget`` condition (preempted by the
scheduler, evicted through the Eviction API, a taint, the kubelet, pod GC after a lost node), a kubelet
``status.reason`` (``Evicted`` for node pressure, ``Terminated``/``Shutdown`` at a node shutdown, admission
errors), or a container ended by a signal (exit 143 after SIGTERM, 137 after SIGKILL that was not an OOM kill).

The trainer's own exits are the job's: 2 is bad input and 1 an error it reported (its ``error: ...`` line,
which mpirun forwards to the launcher's log and the launcher's ``terminationMessagePolicy:
FallbackToLogsOnError`` puts into the pod's terminated state). Running those again gives the same answer, so
they are never retried; nor is a failure whose cause cannot be told (an OOM kill, a deadline, pods gone).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..status import mpijob_conditions
from .observe import is_pod_of
from .. import reasons

#: kubelet / node-lifecycle values of a failed pod's status.reason that mean the node, not the job, ended it.
INFRA_POD_REASONS = frozenset({"Evicted", "Preempting", "NodeLost", "Shutdown", "NodeShutdown", "Terminated",
                               "UnexpectedAdmissionError", "NodeAffinity"})
#: Exit codes of a container ended by a signal from outside: 128 + SIGTERM, 128 + SIGKILL (when not OOMKilled).
SIGNAL_EXITS = {143: "SIGTERM", 137: "SIGKILL"}
EXIT_BAD_INPUT, EXIT_ERROR = 2, 1
MPIJOB_EVICTED = "MPIJobEvicted"
_ERROR_LINE = re.compile(r"(^|\s|:)error:\s", re.IGNORECASE)


@dataclass(frozen=True)
class Failure:
    """A failed stage's cause: whether restarting it can help, a CamelCase reason and the evidence."""

    retry: bool
    reason: str
    message: str


def _terminated(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return (status.get("state") or {}).get("terminated") or (status.get("lastState") or {}).get("terminated")


def error_line(text: str | None) -> str | None:
    """The last `error: ...` line of a log tail (the trainer's, or argparse's `prog: error: ...`)."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    for line in reversed(lines):
        if _ERROR_LINE.search(line):
            return line[:400]
    return None


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:400] if lines else ""


def _disruption(pod: Mapping[str, Any]) -> Failure | None:
    name = (pod.get("metadata") or {}).get("name")
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "DisruptionTarget" and condition.get("status") == "True":
            return Failure(True, str(condition.get("reason") or "DisruptionTarget"),
                           f"pod {name}: {condition.get('reason')}: {condition.get('message') or 'disrupted'}")
    reason = str(status.get("reason") or "")
    if status.get("phase") == "Failed" and (reason in INFRA_POD_REASONS or reason.startswith("OutOf")):
        return Failure(True, reason, f"pod {name}: {reason}: {status.get('message') or 'failed'}")
    for container in status.get("containerStatuses") or []:
        ended = _terminated(container)
        if ended and ended.get("exitCode") in SIGNAL_EXITS and ended.get("reason") != "OOMKilled":
            signal = SIGNAL_EXITS[ended["exitCode"]]
            return Failure(True, "Terminated", f"pod {name}: container {container.get('name')} ended by {signal} "
                                               f"(exit {ended['exitCode']}) from outside the job")
    return None


def _launcher_exit(pods: list[Mapping[str, Any]]) -> tuple[int, str] | None:
    """(exit code, termination message) of the newest launcher container that ended."""
    ended = []
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = _terminated(container)
            if container.get("name") == "launcher" and terminated and terminated.get("exitCode") is not None:
                ended.append((str(terminated.get("finishedAt") or ""), int(terminated["exitCode"]),
                              str(terminated.get("message") or ""), terminated.get("reason")))
    if not ended:
        return None
    _, code, message, reason = max(ended, key=lambda item: item[0])
    return code, (message if reason != "OOMKilled" else f"OOMKilled: {message}".strip())


def classify(mpijob: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> Failure:
    """The cause of `mpijob`'s failure from its Failed condition and its pods (the stage's pods as listed)."""
    name = str((mpijob.get("metadata") or {}).get("name") or "")
    own = [pod for pod in pods if is_pod_of(str((pod.get("metadata") or {}).get("name") or ""), name)]
    failed = next((c for c in mpijob_conditions(dict(mpijob)) if c.get("type") == "Failed" and c.get("status") == "True"), {})
    said = str(failed.get("message") or "MPIJob failed")
    for pod in own:
        disrupted = _disruption(pod)
        if disrupted:
            return disrupted
    if failed.get("reason") == MPIJOB_EVICTED:
        return Failure(True, "Evicted", f"MPIJob {name}: {said}")
    launcher = _launcher_exit(own)
    if launcher is not None:
        code, tail = launcher
        line = error_line(tail)
        if code == EXIT_BAD_INPUT:
            return Failure(False, reasons.INVALID_INPUT, line or _last_line(tail) or "the trainer exited 2 (bad input)")
        if code == EXIT_ERROR and line:
            return Failure(False, reasons.TRAINER_ERROR, line)
        detail = line or _last_line(tail)
        return Failure(False, str(failed.get("reason") or "MPIJobFailed"),
                       f"{said} (launcher exited {code}{': ' + detail if detail else ''})")
    return Failure(False, str(failed.get("reason") or "MPIJobFailed"), said)

"""`kubectl bertjob wait`: block until a job's phase or one of its conditions is what is asked, like `kubectl wait`.

It differs from `kubectl wait --for=jsonpath=...` in one way that matters for training jobs: a job that ends in
another terminal phase (Failed while waiting for Succeeded) can never get there, so the wait ends at once with
exit 1 and the Failed condition's reason and message, instead of sitting out the timeout.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from typing import Any, get_args

from ..api.status import JobPhase
from ..status import TERMINAL_PHASES
from ..terminal import one_line
from ..untrusted import mapping, records, text
from .client import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, PluginError, Target, job_path
from .follow import job_states

PHASES: tuple[str, ...] = get_args(JobPhase)
FOR_FORMS = "phase=<PHASE> or condition=<TYPE>[=True|False|Unknown]"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


@dataclass(frozen=True)
class Goal:
    """What `--for` asks: a phase, or a condition type with a status."""

    kind: str  # "phase" or "condition"
    value: str
    status: str = "True"

    def met(self, job: dict[str, Any]) -> bool:
        status = mapping(job.get("status"))
        if self.kind == "phase":
            return status.get("phase") == self.value
        condition = next((c for c in records(status.get("conditions")) if c.get("type") == self.value), None)
        return condition is not None and condition.get("status") == self.status

    def __str__(self) -> str:
        return f"phase={self.value}" if self.kind == "phase" else f"condition={self.value}={self.status}"


def parse_for(text: str) -> Goal:
    """`--for` as a Goal; PluginError (exit 2) naming the option and what it accepts."""
    kind, sep, rest = text.partition("=")
    if kind == "phase" and sep:
        match = next((p for p in PHASES if p.lower() == rest.lower()), None)
        if match is None:
            raise PluginError(f"--for: unknown phase {rest!r}; allowed: {', '.join(PHASES)}", EXIT_BAD_INPUT)
        return Goal("phase", match)
    if kind == "condition" and sep and rest:
        kind_name, _, wanted = rest.partition("=")
        status = {"true": "True", "false": "False", "unknown": "Unknown"}.get((wanted or "True").lower())
        if not kind_name or status is None:
            raise PluginError(f"--for: {text!r}: a condition's status is True, False or Unknown; expected {FOR_FORMS}",
                              EXIT_BAD_INPUT)
        return Goal("condition", kind_name, status)
    raise PluginError(f"--for: {text!r} is not understood; expected {FOR_FORMS} (phases: {', '.join(PHASES)})",
                      EXIT_BAD_INPUT)


def parse_duration(text: str) -> float | None:
    """kubectl's --timeout: `30s`, `10m`, `1h30m`, a bare number of seconds; 0 checks once; negative waits forever
    (None)."""
    stripped = text.strip()
    try:
        seconds = float(stripped)
    except ValueError:
        parts = _DURATION.findall(stripped)
        if not parts or "".join(number + unit for number, unit in parts) != stripped:
            raise PluginError(f"--timeout: {text!r} is not a duration; use e.g. 30s, 10m, 1h30m", EXIT_BAD_INPUT) from None
        seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    return None if seconds < 0 else seconds


def failure_text(job: dict[str, Any]) -> str:
    """`: Reason: message` of the job's Failed condition, escaped to one line; nothing without one."""
    conditions = records(mapping(job.get("status")).get("conditions"))
    failed = next((c for c in conditions if c.get("type") == "Failed" and c.get("status") == "True"), None)
    if failed is None:
        return ""
    reason, message = text(failed.get("reason")) or "Failed", text(failed.get("message")) or ""
    return one_line(f": {reason}: {message}".rstrip(": "))


def run(target: Target, name: str, goal: Goal, timeout: float | None) -> int:
    """Exit 0 once `goal` is met; 1 at the timeout or when the job ends in a terminal phase that cannot meet it."""
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    where = job_path(target.namespace or "default", name)
    phase = None
    for job in job_states(target, name, deadline):
        if job is None:
            waited = _human(timeout or 0)
            print(f"error: timed out after {waited} waiting for {where} {goal} (phase now: {one_line(phase or '<none>')})",
                  file=sys.stderr)
            return EXIT_FAILED
        phase = text(mapping(job.get("status")).get("phase"))
        if goal.met(job):
            print(f"berttrainingjob.bertoperator.io/{name} condition met ({goal})")
            return EXIT_OK
        if phase in TERMINAL_PHASES:
            print(f"error: {where} is {phase}{failure_text(job)}; it cannot become {goal}", file=sys.stderr)
            return EXIT_FAILED
    raise PluginError(f"watching {where} ended unexpectedly")


def _human(seconds: float) -> str:
    whole = int(seconds)
    if whole != seconds or whole < 60:
        return f"{seconds:g}s"
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s" if rest else f"{minutes}m"

"""When a stage that failed for an infrastructure reason is re-created: exponential backoff, as pure functions.

The restart's bookkeeping lives in the stage's status entry (``restarts``, ``lastRestartTime``, ...), so it
survives operator restarts; the only setting is the backoff, read once from the operator's configuration.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Mapping

from bert_common.contract import parse_utc


@dataclass(frozen=True)
class RecoverySettings:
    """Backoff before re-creating a failed stage: `backoff_seconds` x 2^(restart - 1), at most `max_backoff_seconds`.

    30 s by default, not the Job controller's 10: a trainer killed without SIGTERM leaves its output lease
    (bert_trainer/output_lock.py), and its successor waits for such a lease to expire only when it was last renewed
    more than two renew periods (2 x 15 s) ago; sooner, it takes the old writer for a live one and refuses (exit 2,
    which is never retried). The failure is counted after the old trainer died, so 30 s later is always past that.
    """

    backoff_seconds: float = 30.0
    max_backoff_seconds: float = 360.0

    def delay(self, restart: int) -> float:
        """Seconds between deleting the failed MPIJob and creating restart number `restart` (1, 2, ...)."""
        return min(self.backoff_seconds * 2 ** max(restart - 1, 0), self.max_backoff_seconds)


def due_at(entry: Mapping[str, Any], settings: RecoverySettings) -> datetime.datetime:
    """When the stage's pending restart may create its MPIJob again."""
    started = parse_utc(str(entry["lastRestartTime"]))
    return started + datetime.timedelta(seconds=settings.delay(int(entry.get("restarts") or 1)))


def pending_restart(entry: Mapping[str, Any]) -> bool:
    """Whether the stage's failed MPIJob was deleted for a restart that has not created the new one yet."""
    return entry.get("phase") == "Restarting" and bool(entry.get("restartedMpiJobUid")) and bool(entry.get("lastRestartTime"))


def seconds_until_due(status: Mapping[str, Any], now: datetime.datetime, settings: RecoverySettings) -> float | None:
    """Seconds until the earliest pending restart of a job may go ahead (0 if overdue), None if none waits;
    the operator reconciles the job then instead of at the next resync."""
    waits = [(due_at(entry, settings) - now).total_seconds()
             for entry in status.get("stages") or [] if pending_restart(entry)]
    return max(min(waits), 0.0) if waits else None

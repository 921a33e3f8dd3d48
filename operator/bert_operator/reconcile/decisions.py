"""The words a plan is made of: the writes it asks for, the Events it posts, what its steps see and answer.

Kept apart from plan.py so that each concern's step (policy_step.py, dependency_step.py, follow.py and the
recovery, Kueue and usage steps beside their pure rules) can speak them without importing the walk that calls it.
A step answers with an outcome (Ended, Held, Followed, an Action); only plan.py turns outcomes into a status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..status import StagePhase
from .status_view import StatusView

if TYPE_CHECKING:  # (recovery.py speaks these words too: only names here, no import cycle)
    from ..api import BertTrainingJob
    from ..render import RenderSettings
    from .observe import Observed
    from .recovery import RecoverySettings


@dataclass(frozen=True)
class CreateMPIJob:
    """Create a stage's MPIJob (a 409 adopts the one that exists)."""

    stage: str
    body: dict[str, Any]


@dataclass(frozen=True)
class PatchMPIJob:
    """Merge-patch a stage's MPIJob (the only one: passing runPolicy.suspend on, for a job without a queue)."""

    namespace: str
    name: str
    patch: dict[str, Any]


@dataclass(frozen=True)
class DeleteMPIJob:
    """Delete a stage's failed MPIJob (that uid only, its pods first) so that the stage can be created again."""

    namespace: str
    name: str
    uid: str
    mpijob: dict[str, Any]


@dataclass(frozen=True)
class PatchWorkload:
    """Merge-patch the Kueue Workload of a queued stage's MPIJob (the only one: spec.active from runPolicy.suspend)."""

    namespace: str
    name: str
    mpijob: str
    patch: dict[str, Any]


@dataclass(frozen=True)
class CreateInferenceService:
    """Create the job's InferenceService (spec.serve, the job Succeeded); a 409 adopts the one that exists."""

    body: dict[str, Any]


@dataclass(frozen=True)
class PatchInferenceService:
    """Merge-patch the job's InferenceService to a changed spec.serve (the fields it set before and no longer sets
    are nulled; KServe's own defaults are left alone)."""

    namespace: str
    name: str
    patch: dict[str, Any]


@dataclass(frozen=True)
class DeleteInferenceService:
    """Delete the job's InferenceService (that uid only, where it has one): spec.serve was removed."""

    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class CreateCleanupJob:
    """Create a sweep's cleanup Job (batch/v1), which deletes the checkpoints of the trials but the best; a 409 adopts
    the one that exists."""

    body: dict[str, Any]


Action = (CreateMPIJob | PatchMPIJob | DeleteMPIJob | PatchWorkload | CreateInferenceService | PatchInferenceService
          | DeleteInferenceService | CreateCleanupJob)


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event about the job: Normal or Warning, a CamelCase reason, a message."""

    kind: str
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    """What one reconcile decided."""

    status: dict[str, Any]
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = field(default=())


@dataclass(frozen=True)
class Context:
    """What every step of one plan shares: the job's body, its old status (as written, and as a typed view), the
    observation, now, the settings."""

    body: dict[str, Any]
    old: dict[str, Any]
    observed: Observed
    now: str
    settings: RenderSettings
    recovery: RecoverySettings

    @property
    def status(self) -> StatusView:
        """The old status, read through its typed view."""
        return StatusView(self.old)

    @property
    def generation(self) -> int | None:
        return self.body["metadata"].get("generation")


@dataclass(frozen=True)
class Ended:
    """A job that cannot run as it is: failed with `reason` and its field `errors` (plan.py writes that status).
    `extra`: status fields to keep with it (status.policy, status.dependencies); `job`: the job as parsed, for the
    `kubectl get` columns."""

    errors: Any
    reason: str
    prefix: str = ""
    extra: dict[str, Any] | None = None
    job: BertTrainingJob | None = None


@dataclass(frozen=True)
class Held:
    """No MPIJob may be made now: the policies cannot be read, or one that selects the namespace is invalid (fail
    closed; a running stage goes on). The next reconcile, the resync at the latest, looks again."""

    reason: str
    message: str


@dataclass(frozen=True)
class Followed:
    """One stage's part of the next status: its phase, its status entry, and an Event it deserves."""

    phase: StagePhase
    entry: dict[str, Any]
    event: Event | None = None

"""Observe: read the MPIJobs a job's next decision depends on; the only reads a reconcile makes.

Which MPIJobs that is follows from the job's recorded status alone (no spec
parsing): the stages recorded with an MPIJob that had not succeeded yet. A stage
never created has nothing to read; the plan creates it, and a 409 adopts an
MPIJob that exists after all. An MPIJob the caller already holds (the watch
event that woke us) is used as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .ports import MPIJobApi



@dataclass(frozen=True)
class RefusedCreate:
    """What a create answered when the API server refused the MPIJob itself (schema or admission)."""

    name: str
    status: int
    message: str


#: MPIJobs by name as just observed; None: looked up and not found; RefusedCreate: creating it was refused.
Observed = Mapping[str, "dict[str, Any] | RefusedCreate | None"]


def names_to_read(status: Mapping[str, Any]) -> list[str]:
    """MPIJobs of recorded stages that had not succeeded (normally the one running now)."""
    return [entry["mpiJob"] for entry in status.get("stages") or []
            if entry.get("mpiJob") and entry.get("phase") != "Succeeded"]


def observe(api: MPIJobApi, body: Mapping[str, Any], held: dict[str, Any] | None = None) -> dict[str, dict[str, Any] | None]:
    """The MPIJobs `body`'s next step depends on, read from `api` unless `held` is one of them."""
    namespace = (body.get("metadata") or {}).get("namespace", "default")
    observed: dict[str, dict[str, Any] | None] = {}
    if held is not None:
        observed[held["metadata"]["name"]] = held
    for name in names_to_read(body.get("status") or {}):
        if name not in observed:
            observed[name] = api.get_mpijob(namespace, name)
    return observed

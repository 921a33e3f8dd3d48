"""A stage: one MPIJob of a job, and how it is named.

Which stages a job has is its task's business (``bert_operator.tasks``);
naming lives here because the name-length rule, the renderer and the operator
must agree on it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One MPIJob of a job."""

    index: int
    name: str

    def mpijob_name(self, job_name: str) -> str:
        return f"{job_name}-{self.name}"

"""A job's stages: the MPIJobs it runs, in order.

Pretraining runs one MPIJob per phase (phase n+1 starts from phase n's
weights); every other task runs a single MPIJob. Naming lives here because
the name-length rule, the renderer and the operator must agree on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .models import BertTrainingJobSpec

#: Stage name of single-stage tasks, by task wire name.
SINGLE_STAGE_NAMES = {"squad": "squad", "glue": "glue", "prepareData": "prepare"}


@dataclass(frozen=True)
class Stage:
    """One MPIJob of a job."""

    index: int
    name: str

    def mpijob_name(self, job_name: str) -> str:
        return f"{job_name}-{self.name}"


def stages_of(spec: BertTrainingJobSpec) -> list[Stage]:
    """The stages `spec` runs, in order."""
    task_name, task = spec.task.chosen()
    if task_name == "pretrain":
        return [Stage(i, f"phase{i + 1}") for i in range(len(task.phases))]  # type: ignore[union-attr]
    return [Stage(0, SINGLE_STAGE_NAMES[task_name])]


def longest_pod_name(job_name: str, spec: BertTrainingJobSpec) -> str:
    """The longest pod name the MPI Operator will create for this job.

    Worker pods are named `<mpijob>-worker-<i>` and used as hostnames in the
    MPI hostfile, so they must stay DNS labels (63 characters).
    """
    return max(
        (f"{stage.mpijob_name(job_name)}-worker-{spec.resources.workers - 1}" for stage in stages_of(spec)),
        key=len,
    )

"""The task registry: every task the operator runs, and the per-stage facts derived from it.

Callers ask the registry, never a task by name: :func:`task_of` gives the
one task a spec sets, and the functions below answer for any task.
"""

from __future__ import annotations

from typing import Final

from ..api.locations import in_pod, resolved
from ..api.models import BertTrainingJobSpec
from ..api.stages import Stage
from . import glue, prepare_data, pretrain, squad
from .base import OperatorTask

#: Every task, in the order the API documents them.
TASKS: Final[tuple[OperatorTask, ...]] = (pretrain.TASK, squad.TASK, glue.TASK, prepare_data.TASK)
TASK_NAMES: Final = tuple(task.name for task in TASKS)


def chosen_tasks(spec: BertTrainingJobSpec) -> list[OperatorTask]:
    """The tasks a spec sets (valid specs set exactly one)."""
    return [task for task in TASKS if task.settings(spec) is not None]


def task_of(spec: BertTrainingJobSpec) -> OperatorTask:
    """The one task `spec` sets; LookupError when it sets none or several (the rules report that)."""
    chosen = chosen_tasks(spec)
    if len(chosen) != 1:
        raise LookupError(f"spec sets {len(chosen)} tasks, expected exactly one")
    return chosen[0]


def stages_of(spec: BertTrainingJobSpec) -> list[Stage]:
    """The stages (MPIJobs) `spec` runs, in order."""
    return task_of(spec).stages(spec)


def longest_pod_name(job_name: str, spec: BertTrainingJobSpec) -> str:
    """The longest pod name the MPI Operator will create for this job.

    Worker pods are named `<mpijob>-worker-<i>` and used as hostnames in the
    MPI hostfile, so they must stay DNS labels (63 characters).
    """
    return max(
        (f"{stage.mpijob_name(job_name)}-worker-{spec.resources.workers - 1}" for stage in stages_of(spec)),
        key=len,
    )


def stage_data_path(spec: BertTrainingJobSpec, stage: Stage) -> str:
    """Sub-folder of the dataset a stage reads (empty: the whole dataset)."""
    return task_of(spec).data_path(spec, stage)


def stage_output(spec: BertTrainingJobSpec, stage: Stage, *, in_pod_form: bool = True) -> str:
    """Where a stage writes its checkpoints or records, progress.json and results.json."""
    uri = resolved(spec.output.uri)
    return task_of(spec).output(spec, stage, in_pod(uri) if in_pod_form else uri)


def report_uri(spec: BertTrainingJobSpec, stage: Stage) -> str:
    """URI (s3:// or pvc://) of the folder holding a stage's progress.json and results.json."""
    return stage_output(spec, stage, in_pod_form=False)


__all__ = ["OperatorTask", "TASKS", "TASK_NAMES", "chosen_tasks", "longest_pod_name", "report_uri", "stage_data_path",
           "stage_output", "stages_of", "task_of"]

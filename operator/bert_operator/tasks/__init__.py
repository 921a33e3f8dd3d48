"""The task registry: every task the operator runs, and the per-stage facts derived from it.

Callers ask the registry, never a task by name: :func:`task_of` gives the
one task a spec sets, and the functions below answer for any task.

The registry is found, not listed: every module of this package that defines
``TASK`` (an :class:`OperatorTask`) is a task, so adding a task adds its module
and no line here. The order is `TaskSpec`'s field order, the order the API
documents the tasks in, so a task module and its field in ``api/models.py``
must name each other (`OperatorTask.field`), which :func:`discover` checks.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Final, Iterable

from pydantic import BaseModel

from ..api.locations import in_pod, resolved
from ..api.models import BertTrainingJobSpec, TaskSpec
from ..api.stages import Stage
from .base import OperatorTask


def discover(path: Iterable[str], package: str, task_spec: type[BaseModel] = TaskSpec) -> tuple[OperatorTask, ...]:
    """The `TASK` of every module under `path` (the package `package`), in the order of `task_spec`'s fields.

    A module without `TASK` (base, flags) is not a task. A task whose field `task_spec` lacks, or a field
    no module serves, is a programming error: refused here, at import, naming both sides.
    """
    found = []
    for info in sorted(pkgutil.iter_modules(list(path)), key=lambda info: info.name):
        task = getattr(importlib.import_module(f"{package}.{info.name}"), "TASK", None)
        if isinstance(task, OperatorTask):
            found.append(task)
    fields = list(task_spec.model_fields)
    strays = [f"{task.name} ({task.field})" for task in found if task.field not in fields]
    missing = sorted(set(fields) - {task.field for task in found})
    if strays or missing:
        raise ImportError(f"task modules and {task_spec.__name__} disagree: modules without a field: "
                          f"{', '.join(strays) or 'none'}; fields without a module: {', '.join(missing) or 'none'}")
    return tuple(sorted(found, key=lambda task: fields.index(task.field)))


#: Every task, in the order the API documents them (TaskSpec's fields).
TASKS: Final[tuple[OperatorTask, ...]] = discover(__path__, __name__)
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


__all__ = ["OperatorTask", "TASKS", "TASK_NAMES", "chosen_tasks", "discover", "longest_pod_name", "report_uri",
           "stage_data_path", "stage_output", "stages_of", "task_of"]

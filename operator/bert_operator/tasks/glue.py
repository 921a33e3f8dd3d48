"""glue: GLUE sentence(-pair) classification fine-tuning (NVIDIA's run_classifier flags)."""

from __future__ import annotations

from typing import Any, Iterator

from ..api.checks import check_relative, check_seq
from ..api.errors import FieldError
from ..api.locations import data_root, in_pod, join, resolved
from ..api.models import BertTrainingJobSpec, GlueTask
from ..api.stages import Stage
from .base import FineTuningTask, figure
from .flags import finetune_hyperparameters, finetune_model_flags
from .. import untrusted

#: GLUE's dev metrics, in the order a task's results hold them (CoLA: mcc; MRPC: accuracy, f1; MNLI: accuracy).
_METRICS = (("mcc", "MCC"), ("accuracy", "acc"), ("f1", "F1"))


class Glue(FineTuningTask):
    name = "glue"
    #: MNLI, the largest of the GLUE tasks run here, is under 1 GB.
    dataset_storage = "8Gi"
    field = "glue"
    stage_name = "glue"

    def check(self, spec: BertTrainingJobSpec, max_positions: int) -> Iterator[FieldError]:
        yield from super().check(spec, max_positions)
        task: GlueTask = self.settings(spec)
        yield from check_seq("spec.task.glue", task.max_seq_length, max_positions)
        yield from check_relative("spec.task.glue.dataDir", task.data_dir)

    def data_path(self, spec: BertTrainingJobSpec, stage: Stage) -> str:
        """dataDir, by default the GLUE task's own folder name (MRPC/, CoLA/, ...)."""
        task: GlueTask = self.settings(spec)
        return (task.data_dir or task.task_name).strip("/")

    def trainer_args(self, spec: BertTrainingJobSpec, stage: Stage) -> list[str]:
        task: GlueTask = self.settings(spec)
        return [
            "glue", "--horovod",
            "--task_name", task.task_name,
            "--data_dir", join(data_root(spec), self.data_path(spec, stage)),
            *finetune_model_flags(spec, self.output(spec, stage, in_pod(resolved(spec.output.uri))), self.exports(spec)),
            "--do_train", "--do_eval",
            *finetune_hyperparameters(spec, task, self.trial(spec, stage)),
        ]

    def served_model(self, spec: BertTrainingJobSpec) -> str | None:
        """The GLUE task's name in lower case (mrpc, cola, mnli): the model folder of the triton export."""
        task: GlueTask = self.settings(spec)
        return task.task_name.lower()

    def summary(self, results: dict[str, Any]) -> str:
        """Each dev split's metrics: `CoLA dev MCC 0.412`, `MNLI dev_matched acc 0.841, dev_mismatched acc 0.836`."""
        splits = []
        for split, scores in results.items():
            if not isinstance(scores, dict):
                continue
            figures = [f"{label} {figure(value)}" for key, label in _METRICS
                       if (value := untrusted.number(scores.get(key))) is not None]
            if figures:
                splits.append(f"{split} {' '.join(figures)}")
        task = untrusted.text(results.get("task"))
        return f"{task} {', '.join(splits)}" if splits and task else ", ".join(splits)


TASK = Glue()

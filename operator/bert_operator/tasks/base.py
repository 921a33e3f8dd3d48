"""The shape of one task as the operator knows it; one module per task fills it in.

Everything that differs between pretrain, squad, glue and prepareData lives in
that task's module: its stages, its cross-field rules, where each stage reads
and writes, the trainer's command line, how its stages weigh in the job's
progress, and what a local run needs installed. The validator, renderer,
progress merge and local runner iterate the registry (``tasks/__init__.py``)
and never name a task. Adding a task is its module here, its module in
``bert_trainer.tasks``, and its model in ``api/models.py``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Iterator

from ..api.errors import FieldError
from bert_common.contract import EXPORT_HF, EXPORT_SAVEDMODEL, EXPORT_TRITON
from ..api.locations import join
from ..api.models import BertTrainingJobSpec
from ..api.stages import Stage
from .trials import Trial, trials
from .trials import check as check_sweep


class OperatorTask:
    """Defaults fit a single-stage task that reads the whole dataset and writes to `<output>/<stage>`."""

    #: Key under `spec.task` (camelCase, as users write it).
    name: ClassVar[str]
    #: Attribute of `TaskSpec` holding this task's settings (snake_case).
    field: ClassVar[str]
    #: Stage (and MPIJob suffix) of a single-stage task.
    stage_name: ClassVar[str] = ""
    #: Whether the task tokenizes (needs spec.model.vocab) or fine-tunes (needs spec.model.initCheckpoint).
    needs_vocab: ClassVar[bool] = False
    needs_init_checkpoint: ClassVar[bool] = False
    #: Whether it reads records another job makes (spec.dataset.fromJob: a prepareData job's output); a task that
    #: reads downloaded files (GLUE, SQuAD) takes spec.dataset.uri only.
    reads_records: ClassVar[bool] = False
    #: Default of spec.resources.datasetStorage: local disk for one stage's s3:// data in a worker. Generous on
    #: purpose (the sync fails when the disk is full, and an emptyDir over its sizeLimit evicts the pod).
    dataset_storage: ClassVar[str]
    #: Python modules its trainer imports, checked before a local run starts.
    local_modules: ClassVar[tuple[str, ...]] = ()
    #: What each stage exports at its end unless spec.output.exportFormats says otherwise (contract.EXPORT_FORMATS).
    default_exports: ClassVar[tuple[str, ...]] = ()

    def settings(self, spec: BertTrainingJobSpec) -> Any:
        """This task's part of the spec (e.g. a PretrainTask)."""
        return getattr(spec.task, self.field)

    def stages(self, spec: BertTrainingJobSpec) -> list[Stage]:
        """The MPIJobs this task runs, in order."""
        return [Stage(0, self.stage_name)]

    def check(self, spec: BertTrainingJobSpec, max_positions: int) -> Iterator[FieldError]:
        """Rules across this task's fields (the generic rules run as well)."""
        return iter(())

    def data_path(self, spec: BertTrainingJobSpec, stage: Stage) -> str:
        """Sub-folder of the dataset a stage reads (empty: the whole dataset)."""
        return ""

    def output(self, spec: BertTrainingJobSpec, stage: Stage, base: str) -> str:
        """Where a stage writes (checkpoints, records, progress.json, results.json) under the output `base`."""
        return join(base, stage.name)

    def exports(self, spec: BertTrainingJobSpec) -> list[str]:
        """The formats each stage exports at its end: spec.output.exportFormats, else this task's default."""
        chosen = spec.output.export_formats
        return list(self.default_exports if chosen is None else chosen)

    def trainer_args(self, spec: BertTrainingJobSpec, stage: Stage) -> list[str]:
        """Arguments after `python -m bert_trainer` for one stage, in NVIDIA's flag names."""
        raise NotImplementedError(f"task {self.name} renders no trainer command")

    def served_model(self, spec: BertTrainingJobSpec) -> str | None:
        """The model's name in the triton export (<output>/export/triton/<model>/) when the task's model can be served
        (spec.serve); None for a task that makes no model to answer requests with (pretraining, data)."""
        return None

    def stage_weights(self, spec: BertTrainingJobSpec) -> list[float]:
        """Each stage's share of the whole job, for the progress percentage."""
        stages = self.stages(spec)
        return [1.0 / len(stages)] * len(stages)

    def mpirun_binding(self, spec: BertTrainingJobSpec) -> list[str]:
        """Process binding: NVIDIA's fine-tuning and CPU launches map by slot without binding."""
        return ["--bind-to", "none", "--map-by", "slot"]

    def summary(self, results: dict[str, Any]) -> str:
        """The figure that says how good a finished job's result is (`bertjob run --local`'s METRIC column), from
        the trainer's results.json as the status holds it: untrusted, so read with `untrusted`'s typed getters."""
        return ""


def figure(value: float, digits: int = 3) -> str:
    """A metric as the summary shows it: a fixed number of decimals."""
    return f"{value:.{digits}f}"


class FineTuningTask(OperatorTask):
    """A task that fine-tunes pretrained weights: it tokenizes, loads a checkpoint and needs TensorFlow locally.

    With a sweep (trials.py) its stages are the trials, t0..t<n-1>, each writing to `<output>/<task>/t<k>`."""

    needs_vocab = True
    needs_init_checkpoint = True
    local_modules = ("tensorflow", "tokenizers")
    #: A fine-tuned model is what gets served: every format, the Triton repository being what spec.serve serves.
    default_exports = (EXPORT_HF, EXPORT_SAVEDMODEL, EXPORT_TRITON)

    def stages(self, spec: BertTrainingJobSpec) -> list[Stage]:
        found = trials(self.settings(spec))
        return [Stage(trial.index, trial.name) for trial in found] if found else super().stages(spec)

    def trial(self, spec: BertTrainingJobSpec, stage: Stage) -> Trial | None:
        """The trial a stage runs; None outside a sweep."""
        found = trials(self.settings(spec))
        return found[stage.index] if found and stage.index < len(found) and found[stage.index].name == stage.name else None

    def output(self, spec: BertTrainingJobSpec, stage: Stage, base: str) -> str:
        if self.trial(spec, stage) is not None:
            return join(base, self.stage_name, stage.name)
        return super().output(spec, stage, base)

    def check(self, spec: BertTrainingJobSpec, max_positions: int) -> Iterator[FieldError]:
        yield from check_sweep(f"spec.task.{self.name}", self.settings(spec))

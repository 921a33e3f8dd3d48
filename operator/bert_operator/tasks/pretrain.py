"""pretrain: NVIDIA's masked-LM + next-sentence pretraining, one MPIJob per phase.

Phase n+1 starts from phase n's checkpoints, so a phase's stage is its own
MPIJob (`<job>-phase<n>`) and the job's progress weighs each phase by its share
of the steps.
"""

from __future__ import annotations

import math
from typing import Any, Iterator

from ..api.checks import check_predictions, check_relative, check_seq
from ..api.errors import FieldError
from ..api.locations import data_root, in_pod, join, resolved
from ..api.models import BertTrainingJobSpec, PrepareDataTask, PretrainTask
from ..api.presets import NVIDIA_CORPUS_FOLDER
from ..api.stages import Stage
from .base import OperatorTask, figure
from bert_common.contract import EXPORT_HF, EXPORT_TRITON
from .flags import export_flags, model_flags, number, optimizer_flags, retention_flags, speed_flags
from .. import untrusted


class Pretrain(OperatorTask):
    name = "pretrain"
    #: One phase's TFRecords of Wikipedia + BookCorpus: the recipe gives over 170 GB for the corpus, and its
    #: records (each document dupe_factor times) are of that order; twice that.
    dataset_storage = "400Gi"
    field = "pretrain"
    reads_records = True
    local_modules = ("tensorflow",)
    #: A pretrained model is fine-tuned further, seldom served: the Hugging Face folder only.
    default_exports = (EXPORT_HF,)

    def stages(self, spec: BertTrainingJobSpec) -> list[Stage]:
        task: PretrainTask = self.settings(spec)
        return [Stage(i, f"phase{i + 1}") for i in range(len(task.phases))]

    def check(self, spec: BertTrainingJobSpec, max_positions: int) -> Iterator[FieldError]:
        if spec.output.print_metrics:
            yield FieldError("spec.output.printMetrics", "prints a fine-tuned model's dev metrics (glue, squad); "
                                                         "pretrain has none")
        task: PretrainTask = self.settings(spec)
        if EXPORT_TRITON in (spec.output.export_formats or []):
            yield FieldError("spec.output.exportFormats", f"{EXPORT_TRITON} serves a fine-tuned model (glue, squad); "
                                                          "pretrain's heads answer no requests (hf or savedmodel)")
        total = math.fsum(phase.steps_fraction for phase in task.phases)
        if abs(total - 1.0) > 1e-6:
            yield FieldError("spec.task.pretrain.phases", f"stepsFraction values must sum to 1, got {total:g}")
            return
        for i, (phase, steps) in enumerate(zip(task.phases, task.phase_steps())):
            path = f"spec.task.pretrain.phases[{i}]"
            yield from check_seq(path, phase.max_seq_length, max_positions)
            yield from check_predictions(path, phase.max_predictions_per_seq, phase.max_seq_length)
            yield from check_relative(f"{path}.dataPath", phase.data_path)
            if steps < 1:
                yield FieldError(
                    f"{path}.stepsFraction",
                    f"gives {steps} steps of trainSteps {task.train_steps}; every phase needs at least 1",
                )
            elif phase.warmup_steps > steps:
                yield FieldError(f"{path}.warmupSteps", f"must be <= the phase's {steps} steps, got {phase.warmup_steps}")

    def data_path(self, spec: BertTrainingJobSpec, stage: Stage) -> str:
        """The phase's dataPath, else the set a prepareData job with default settings writes for it."""
        phase = self.settings(spec).phases[stage.index]
        if phase.data_path is not None:
            return phase.data_path.strip("/")
        records = PrepareDataTask(max_seq_length=phase.max_seq_length, max_predictions_per_seq=phase.max_predictions_per_seq)
        return f"{records.folder_name(lower_case=spec.model.lower_case)}/{NVIDIA_CORPUS_FOLDER}"

    def stage_weights(self, spec: BertTrainingJobSpec) -> list[float]:
        task: PretrainTask = self.settings(spec)
        return [steps / task.train_steps for steps in task.phase_steps()]

    def mpirun_binding(self, spec: BertTrainingJobSpec) -> list[str]:
        """GPU pretraining binds ranks to sockets, as NVIDIA's pretraining launch did."""
        if spec.resources.gpus_per_worker > 0:
            return ["--bind-to", "socket"]
        return super().mpirun_binding(spec)

    def trainer_args(self, spec: BertTrainingJobSpec, stage: Stage) -> list[str]:
        task: PretrainTask = self.settings(spec)
        phase = task.phases[stage.index]
        steps = task.phase_steps()[stage.index]
        records = join(data_root(spec), self.data_path(spec, stage))
        output = in_pod(resolved(spec.output.uri))
        if stage.index > 0:
            init: str | None = self.output(spec, self.stages(spec)[stage.index - 1], output)  # previous phase's checkpoints
        else:
            init = in_pod(spec.model.init_checkpoint) if spec.model.init_checkpoint else None
        return [
            "pretrain", "--horovod",
            "--input_files_dir", join(records, "training"),
            "--eval_files_dir", join(records, "test"),
            "--output_dir", self.output(spec, stage, output),
            *model_flags(spec),
            "--train_batch_size", str(phase.batch_size_per_gpu),
            "--eval_batch_size", str(task.eval_batch_size_per_gpu),
            "--max_seq_length", str(phase.max_seq_length),
            "--max_predictions_per_seq", str(phase.max_predictions_per_seq),
            "--num_train_steps", str(steps),
            "--num_warmup_steps", str(phase.warmup_steps),
            "--num_accumulation_steps", str(phase.accumulation_steps),
            "--learning_rate", number(phase.learning_rate),
            *optimizer_flags(spec, "lamb"),
            *speed_flags(spec),
            *(["--allreduce_post_accumulation"] if phase.accumulation_steps > 1 else []),
            "--save_checkpoints_steps", str(task.save_checkpoints_steps),
            *retention_flags(spec),
            *export_flags(self.exports(spec)),
            *(["--init_checkpoint", init] if init else []),
            "--do_train", "--do_eval",
        ]

    def summary(self, results: dict[str, Any]) -> str:
        """The last phase's final training loss and masked-LM accuracy (on the eval set when it ran)."""
        parts = []
        loss = untrusted.number(results.get("finalLoss"))
        if loss is not None:
            parts.append(f"loss {figure(loss)}")
        for key, label in (("evalMlmAccuracy", "eval MLM acc"), ("mlmAccuracy", "MLM acc")):
            accuracy = untrusted.number(results.get(key))
            if accuracy is not None:
                parts.append(f"{label} {figure(accuracy)}")
                break
        return ", ".join(parts)


TASK = Pretrain()

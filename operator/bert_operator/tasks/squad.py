"""squad: SQuAD v1.1 / v2.0 question-answering fine-tuning and prediction (NVIDIA's run_squad flags)."""

from __future__ import annotations

from typing import Any, Iterator

from ..api.checks import check_relative, check_seq
from ..api.errors import FieldError
from ..api.locations import data_root, in_pod, join, resolved
from ..api.models import BertTrainingJobSpec, SquadTask
from ..api.stages import Stage
from .base import FineTuningTask, figure
from .flags import finetune_hyperparameters, finetune_model_flags, number
from .. import untrusted

#: [CLS] question [SEP] context [SEP]: a SQuAD feature needs room for three
#: special tokens and at least one context token besides the question.
SQUAD_SPECIAL_TOKENS = 3


class Squad(FineTuningTask):
    name = "squad"
    #: SQuAD's train and dev JSON files are under 100 MB together.
    dataset_storage = "2Gi"
    field = "squad"
    stage_name = "squad"

    def check(self, spec: BertTrainingJobSpec, max_positions: int) -> Iterator[FieldError]:
        yield from super().check(spec, max_positions)
        task: SquadTask = self.settings(spec)
        yield from check_seq("spec.task.squad", task.max_seq_length, max_positions)
        if task.doc_stride >= task.max_seq_length:
            yield FieldError("spec.task.squad.docStride",
                             f"must be < maxSeqLength ({task.max_seq_length}), got {task.doc_stride}")
        limit = task.max_seq_length - SQUAD_SPECIAL_TOKENS - 1
        if task.max_query_length > limit:
            yield FieldError(
                "spec.task.squad.maxQueryLength",
                f"must be <= maxSeqLength - 4 ({limit}) to leave room for context, got {task.max_query_length}",
            )
        for field, value in (("trainFile", task.train_file), ("predictFile", task.predict_file)):
            yield from check_relative(f"spec.task.squad.{field}", value)

    def trainer_args(self, spec: BertTrainingJobSpec, stage: Stage) -> list[str]:
        task: SquadTask = self.settings(spec)
        root = data_root(spec)
        train_file = task.train_file or f"train-v{task.version}.json"
        predict_file = task.predict_file or f"dev-v{task.version}.json"
        v2 = ["--version_2_with_negative", "--null_score_diff_threshold", number(task.null_score_diff_threshold)]
        return [
            "squad", "--horovod",
            *finetune_model_flags(spec, self.output(spec, stage, in_pod(resolved(spec.output.uri))), self.exports(spec)),
            "--do_train", "--train_file", join(root, train_file),
            "--do_predict", "--predict_file", join(root, predict_file),
            "--doc_stride", str(task.doc_stride),
            "--max_query_length", str(task.max_query_length),
            *finetune_hyperparameters(spec, task, self.trial(spec, stage)),
            *(v2 if task.version == "2.0" else []),
        ]

    def served_model(self, spec: BertTrainingJobSpec) -> str | None:
        """squad: the model folder of the triton export."""
        return "squad"

    def summary(self, results: dict[str, Any]) -> str:
        """F1 and exact match on the predict file, in percent (v1.1: exact_match; v2.0: exact)."""
        scores = untrusted.mapping(results.get("predict"))
        f1 = untrusted.number(scores.get("f1"))
        exact = untrusted.number(scores.get("exact_match"))
        exact = untrusted.number(scores.get("exact")) if exact is None else exact
        parts = ([f"F1 {figure(f1, 2)}"] if f1 is not None else []) + ([f"EM {figure(exact, 2)}"] if exact is not None else [])
        return ", ".join(parts)


TASK = Squad()

"""Rules that relate several fields, as a pure function returning field errors.

Each rule names the one field a user should change; all broken rules are
reported together so a user fixes a spec in one pass (the MPI Operator's
validation style).
"""

from __future__ import annotations

import math
from pathlib import PurePosixPath
from typing import Iterator

from .errors import FieldError
from .models import BertTrainingJob, BertTrainingJobSpec, DatasetSpec, PretrainTask
from .stages import longest_pod_name

#: Kubernetes DNS label limit, which pod names used as hostnames must respect.
MAX_POD_NAME = 63
#: [CLS] question [SEP] context [SEP]: a SQuAD feature needs room for three
#: special tokens and at least one context token besides the question.
SQUAD_SPECIAL_TOKENS = 3


def check(job: BertTrainingJob) -> list[FieldError]:
    """Every cross-field rule `job` breaks (empty when the job is valid)."""
    return [*_check_spec(job.spec), *_check_name(job)]


def _check_name(job: BertTrainingJob) -> Iterator[FieldError]:
    try:
        longest = longest_pod_name(job.metadata.name, job.spec)
    except LookupError:
        return  # no task: reported by the task rule
    if len(longest) > MAX_POD_NAME:
        room = len(job.metadata.name) - (len(longest) - MAX_POD_NAME)
        yield FieldError(
            "metadata.name",
            f"too long: worker pod {longest!r} would have {len(longest)} characters, at most "
            f"{MAX_POD_NAME} are allowed; use a name of at most {max(room, 1)} characters",
        )


def _check_spec(spec: BertTrainingJobSpec) -> Iterator[FieldError]:
    chosen = [name for name, value in spec.task.model_dump(by_alias=True).items() if value is not None]
    if len(chosen) != 1:
        got = "none" if not chosen else " and ".join(chosen)
        yield FieldError("spec.task", f"must set exactly one of pretrain, squad, glue, prepareData; got {got}")
        return
    yield from _check_model(spec)
    max_positions = spec.model.resolved_config().max_position_embeddings
    task = spec.task
    if task.pretrain is not None:
        yield from _check_pretrain(task.pretrain, max_positions)
    if task.squad is not None:
        yield from _check_seq("spec.task.squad", task.squad.max_seq_length, max_positions)
        if task.squad.doc_stride >= task.squad.max_seq_length:
            yield FieldError(
                "spec.task.squad.docStride",
                f"must be < maxSeqLength ({task.squad.max_seq_length}), got {task.squad.doc_stride}",
            )
        limit = task.squad.max_seq_length - SQUAD_SPECIAL_TOKENS - 1
        if task.squad.max_query_length > limit:
            yield FieldError(
                "spec.task.squad.maxQueryLength",
                f"must be <= maxSeqLength - 4 ({limit}) to leave room for context, got {task.squad.max_query_length}",
            )
        for field, value in (("trainFile", task.squad.train_file), ("predictFile", task.squad.predict_file)):
            yield from _check_relative(f"spec.task.squad.{field}", value)
    if task.glue is not None:
        yield from _check_seq("spec.task.glue", task.glue.max_seq_length, max_positions)
        yield from _check_relative("spec.task.glue.dataDir", task.glue.data_dir)
    if task.prepare_data is not None:
        prep = task.prepare_data
        yield from _check_seq("spec.task.prepareData", prep.max_seq_length, max_positions)
        yield from _check_predictions("spec.task.prepareData", prep.max_predictions_per_seq, prep.max_seq_length)
        if prep.shards < spec.resources.workers:
            yield FieldError(
                "spec.task.prepareData.shards",
                f"must be >= resources.workers ({spec.resources.workers}) so every worker writes a shard, got {prep.shards}",
            )
    if task.prepare_data is not None or task.squad is not None or task.glue is not None:
        if spec.model.vocab is None:
            yield FieldError("spec.model.vocab", "required for prepareData, squad and glue: the vocab.txt to tokenize with")
    if (task.squad is not None or task.glue is not None) and spec.model.init_checkpoint is None:
        yield FieldError("spec.model.initCheckpoint", "required for squad and glue: the pretrained weights to fine-tune")
    yield from _check_store("spec.dataset", spec.dataset)
    yield from _check_store("spec.output", spec.output)
    for i, toleration in enumerate(spec.resources.tolerations):
        if toleration.operator == "Exists" and toleration.value:
            yield FieldError(f"spec.resources.tolerations[{i}].value", "must be empty when operator is Exists")


def _check_model(spec: BertTrainingJobSpec) -> Iterator[FieldError]:
    model = spec.model
    if model.preset == "custom" and model.config is None:
        yield FieldError("spec.model.config", "required when preset is custom (a Google bert_config.json)")
    if model.preset != "custom" and model.config is not None:
        yield FieldError("spec.model.config", f"only allowed with preset: custom, got preset {model.preset!r}")
    config = model.resolved_config()
    if config.hidden_size % config.num_attention_heads:
        yield FieldError(
            "spec.model.config.num_attention_heads",
            f"must divide hidden_size ({config.hidden_size}), got {config.num_attention_heads}",
        )


def _check_pretrain(task: PretrainTask, max_positions: int) -> Iterator[FieldError]:
    total = math.fsum(phase.steps_fraction for phase in task.phases)
    if abs(total - 1.0) > 1e-6:
        yield FieldError("spec.task.pretrain.phases", f"stepsFraction values must sum to 1, got {total:g}")
        return
    for i, (phase, steps) in enumerate(zip(task.phases, task.phase_steps())):
        path = f"spec.task.pretrain.phases[{i}]"
        yield from _check_seq(path, phase.max_seq_length, max_positions)
        yield from _check_predictions(path, phase.max_predictions_per_seq, phase.max_seq_length)
        yield from _check_relative(f"{path}.dataPath", phase.data_path)
        if steps < 1:
            yield FieldError(
                f"{path}.stepsFraction",
                f"gives {steps} steps of trainSteps {task.train_steps}; every phase needs at least 1",
            )
        elif phase.warmup_steps > steps:
            yield FieldError(f"{path}.warmupSteps", f"must be <= the phase's {steps} steps, got {phase.warmup_steps}")


def _check_seq(path: str, max_seq_length: int, max_positions: int) -> Iterator[FieldError]:
    if max_seq_length > max_positions:
        yield FieldError(
            f"{path}.maxSeqLength",
            f"must be <= the model's max_position_embeddings ({max_positions}), got {max_seq_length}",
        )


def _check_predictions(path: str, max_predictions: int, max_seq_length: int) -> Iterator[FieldError]:
    if max_predictions > max_seq_length:
        yield FieldError(
            f"{path}.maxPredictionsPerSeq",
            f"must be <= maxSeqLength ({max_seq_length}), got {max_predictions}",
        )


def _check_relative(path: str, value: str | None) -> Iterator[FieldError]:
    if value is None:
        return
    pure = PurePosixPath(value)
    if not value or pure.is_absolute() or ".." in pure.parts:
        yield FieldError(path, f"must be a relative path inside the dataset without '..', got {value!r}")


def _check_store(path: str, store: DatasetSpec) -> Iterator[FieldError]:
    if store.uri.startswith("s3://"):
        return
    for field, value in (("endpoint", store.endpoint), ("region", store.region), ("credentialsSecret", store.credentials_secret)):
        if value is not None:
            yield FieldError(f"{path}.{field}", f"only applies to s3:// URIs, but uri is {store.uri!r}")

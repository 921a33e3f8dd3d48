"""Trainer flags several tasks share, from the spec, in NVIDIA's flag names (pure)."""

from __future__ import annotations

import json

from bert_common.contract import EXPORT_TRITON
from ..api.locations import in_pod
from ..api.models import BertTrainingJobSpec, GlueTask, SquadTask
from .trials import Trial


def number(value: float) -> str:
    """Shortest exact text of a number (7.5e-4 -> '0.00075', 2.0 -> '2')."""
    return format(value, "g")


def model_flags(spec: BertTrainingJobSpec) -> list[str]:
    """--bert_model for Google's presets, the whole config inline for a custom model."""
    if spec.model.preset == "custom":
        config = spec.model.resolved_config().model_dump()
        return ["--bert_config_json", json.dumps(config, separators=(",", ":"), sort_keys=True)]
    return ["--bert_model", spec.model.preset]


def optimizer_flags(spec: BertTrainingJobSpec, default: str) -> list[str]:
    opt = spec.optimizer
    return [
        "--optimizer", opt.name or default,
        "--weight_decay_rate", number(opt.weight_decay_rate),
        "--beta_1", number(opt.beta1), "--beta_2", number(opt.beta2), "--epsilon", number(opt.epsilon),
    ]


def speed_flags(spec: BertTrainingJobSpec) -> list[str]:
    return ["--precision", spec.precision, *(["--use_xla"] if spec.xla else [])]


def tokenizer_flags(spec: BertTrainingJobSpec) -> list[str]:
    """The vocab and casing every tokenizing task passes (the rules guarantee a vocab)."""
    assert spec.model.vocab
    return ["--vocab_file", in_pod(spec.model.vocab), *(["--do_lower_case"] if spec.model.lower_case else [])]


def retention_flags(spec: BertTrainingJobSpec) -> list[str]:
    """How many checkpoints a training stage keeps (output.keepCheckpoints; 0 keeps all)."""
    return ["--keep_checkpoint_max", str(spec.output.keep_checkpoints)]


def export_flags(formats: list[str]) -> list[str]:
    """What a training stage exports at its end (none: no flag, the trainer's default)."""
    return ["--export_formats", ",".join(formats)] if formats else []


def tensorrt_flags(spec: BertTrainingJobSpec, exports: list[str]) -> list[str]:
    """TF-TRT in FP16 for Triton (the export's config.pbtxt optimization block) where spec.serve asks for it."""
    wanted = spec.serve is not None and spec.serve.tensorrt == "fp16" and EXPORT_TRITON in exports
    return ["--triton_tensorrt", "fp16"] if wanted else []


def finetune_model_flags(spec: BertTrainingJobSpec, output_dir: str, exports: list[str]) -> list[str]:
    """Tokenizer, model, pretrained weights, output and exports: what squad and glue both pass."""
    assert spec.model.init_checkpoint  # guaranteed by the rules
    return [
        *tokenizer_flags(spec),
        *model_flags(spec),
        "--init_checkpoint", in_pod(spec.model.init_checkpoint),
        "--output_dir", output_dir,
        *retention_flags(spec),
        *export_flags(exports),
        *tensorrt_flags(spec, exports),
        *(["--print_metrics"] if spec.output.print_metrics else []),
    ]


def finetune_hyperparameters(spec: BertTrainingJobSpec, task: SquadTask | GlueTask, trial: Trial | None = None) -> list[str]:
    """The hyperparameters squad and glue share; a sweep's trial sets its own learning rate, seed, epochs and batch."""
    return [
        "--max_seq_length", str(task.max_seq_length),
        "--train_batch_size", str(trial.batch_size if trial else task.batch_size_per_gpu),
        "--learning_rate", number(trial.learning_rate if trial else task.learning_rate),
        "--num_train_epochs", number(trial.epochs if trial else task.epochs),
        *(["--seed", str(trial.seed)] if trial else []),
        *(["--first_epoch_eval"] if trial and isinstance(task, GlueTask) and task.sweep and task.sweep.early_stop else []),
        "--warmup_proportion", number(task.warmup_proportion),
        *optimizer_flags(spec, "adam"),
        *speed_flags(spec),
    ]

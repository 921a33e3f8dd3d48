"""The launcher's command line: mpirun plus `python -m bert_trainer <task>`.

Flag names are NVIDIA's (run_pretraining.py, run_squad.py, run_classifier.py,
create_pretraining_data.py) so a rendered job reads like the recipe and can be
reproduced from its command line alone (reference.md).
"""

from __future__ import annotations

import json

from ..api.locations import data_root, in_pod, join, stage_data_path, stage_output
from ..api.models import BertTrainingJobSpec, GlueTask, PrepareDataTask, PretrainTask, SquadTask
from ..api.stages import Stage, stages_of

#: How a container starts the trainer (the image's interpreter); local mode finds and replaces exactly this.
TRAINER_ENTRY = ("python", "-m", "bert_trainer")
#: Variables every rank needs from the launcher's environment.
BASE_EXPORTS = ("NCCL_DEBUG", "LD_LIBRARY_PATH", "PATH", "PYTHONUNBUFFERED")


def number(value: float) -> str:
    """Shortest exact text of a number (7.5e-4 -> '0.00075', 2.0 -> '2')."""
    return format(value, "g")


def mpirun(spec: BertTrainingJobSpec, exported: list[str]) -> list[str]:
    """mpirun with the recipe's flags for this task.

    Pretraining binds ranks to sockets as NVIDIA's pretraining launch did;
    fine-tuning and CPU jobs map by slot without binding (NVIDIA's
    fine-tuning launch). Ranks started over ssh do not inherit the pod's
    environment, so every variable they need is exported with -x.
    """
    binding = ["--bind-to", "socket"] if spec.task.pretrain is not None and spec.resources.gpus_per_worker > 0 else [
        "--bind-to", "none", "--map-by", "slot",
    ]
    exports = [flag for name in (*BASE_EXPORTS, *exported) for flag in ("-x", name)]
    return [
        "mpirun", "--allow-run-as-root", "-np", str(spec.resources.total_processes()),
        *binding, *exports, "-mca", "pml", "ob1", "-mca", "btl", "^openib",
    ]


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


def _pretrain(spec: BertTrainingJobSpec, task: PretrainTask, stage: Stage) -> list[str]:
    phase = task.phases[stage.index]
    steps = task.phase_steps()[stage.index]
    records = join(data_root(spec), stage_data_path(spec, stage))
    if stage.index > 0:
        init = stage_output(spec, stages_of(spec)[stage.index - 1])  # previous phase's checkpoints
    else:
        init = in_pod(spec.model.init_checkpoint) if spec.model.init_checkpoint else None
    return [
        "pretrain", "--horovod",
        "--input_files_dir", join(records, "training"),
        "--eval_files_dir", join(records, "test"),
        "--output_dir", stage_output(spec, stage),
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
        *(["--init_checkpoint", init] if init else []),
        "--do_train", "--do_eval",
    ]


def _finetune_common(spec: BertTrainingJobSpec, stage: Stage) -> list[str]:
    assert spec.model.vocab and spec.model.init_checkpoint  # guaranteed by the rules
    return [
        "--vocab_file", in_pod(spec.model.vocab),
        *(["--do_lower_case"] if spec.model.lower_case else []),
        *model_flags(spec),
        "--init_checkpoint", in_pod(spec.model.init_checkpoint),
        "--output_dir", stage_output(spec, stage),
    ]


def _finetune_hyperparameters(spec: BertTrainingJobSpec, task: SquadTask | GlueTask) -> list[str]:
    """The hyperparameters squad and glue share, in NVIDIA's flag names."""
    return [
        "--max_seq_length", str(task.max_seq_length),
        "--train_batch_size", str(task.batch_size_per_gpu),
        "--learning_rate", number(task.learning_rate),
        "--num_train_epochs", number(task.epochs),
        "--warmup_proportion", number(task.warmup_proportion),
        *optimizer_flags(spec, "adam"),
        *speed_flags(spec),
    ]


def _squad(spec: BertTrainingJobSpec, task: SquadTask, stage: Stage) -> list[str]:
    root = data_root(spec)
    train_file = task.train_file or f"train-v{task.version}.json"
    predict_file = task.predict_file or f"dev-v{task.version}.json"
    v2 = ["--version_2_with_negative", "--null_score_diff_threshold", number(task.null_score_diff_threshold)]
    return [
        "squad", "--horovod",
        *_finetune_common(spec, stage),
        "--do_train", "--train_file", join(root, train_file),
        "--do_predict", "--predict_file", join(root, predict_file),
        "--doc_stride", str(task.doc_stride),
        "--max_query_length", str(task.max_query_length),
        *_finetune_hyperparameters(spec, task),
        *(v2 if task.version == "2.0" else []),
    ]


def _glue(spec: BertTrainingJobSpec, task: GlueTask, stage: Stage) -> list[str]:
    return [
        "glue", "--horovod",
        "--task_name", task.task_name,
        "--data_dir", join(data_root(spec), stage_data_path(spec, stage)),
        *_finetune_common(spec, stage),
        "--do_train", "--do_eval",
        *_finetune_hyperparameters(spec, task),
    ]


def _prepare(spec: BertTrainingJobSpec, task: PrepareDataTask, stage: Stage) -> list[str]:
    assert spec.model.vocab  # guaranteed by the rules
    return [
        "prepare-data", "--horovod",
        "--input_dir", data_root(spec),
        "--output_dir", stage_output(spec, stage),
        "--vocab_file", in_pod(spec.model.vocab),
        *(["--do_lower_case"] if spec.model.lower_case else []),
        *(["--do_whole_word_mask"] if task.whole_word_masking else []),
        "--max_seq_length", str(task.max_seq_length),
        "--max_predictions_per_seq", str(task.max_predictions_per_seq),
        "--masked_lm_prob", number(task.masked_lm_prob),
        "--short_seq_prob", number(task.short_seq_prob),
        "--dupe_factor", str(task.dupe_factor),
        "--n_shards", str(task.shards),
        "--test_split", str(task.test_split),
        "--random_seed", str(task.seed),
    ]


def trainer_args(spec: BertTrainingJobSpec, stage: Stage) -> list[str]:
    """Arguments after `python -m bert_trainer` for one stage."""
    task = spec.task
    if task.pretrain is not None:
        return _pretrain(spec, task.pretrain, stage)
    if task.squad is not None:
        return _squad(spec, task.squad, stage)
    if task.glue is not None:
        return _glue(spec, task.glue, stage)
    assert task.prepare_data is not None
    return _prepare(spec, task.prepare_data, stage)


def trainer_command(spec: BertTrainingJobSpec, stage: Stage) -> list[str]:
    """`python -m bert_trainer ...` exactly as a rank runs it (also what a local run executes)."""
    return [*TRAINER_ENTRY, *trainer_args(spec, stage)]


def launcher_command(spec: BertTrainingJobSpec, stage: Stage, exported: list[str]) -> list[str]:
    """The launcher container's whole command."""
    return [*mpirun(spec, exported), *trainer_command(spec, stage)]

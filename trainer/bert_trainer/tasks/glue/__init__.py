"""``glue``: GLUE fine-tuning (CoLA, MRPC, MNLI), the flags of NVIDIA's run_classifier.py.

This module is the command line (TensorFlow-free); the fine-tuning itself is
:mod:`bert_trainer.tasks.glue.driver`, imported only once the flags passed.
"""

from __future__ import annotations

import argparse

from bert_trainer import storage
from bert_trainer.finetune.glue_data import TASKS as GLUE_TASKS
from bert_trainer.flags import bool_flag
from bert_trainer.model.heads import Head
from bert_trainer.tasks.finetuning import add_finetune_arguments, run_finetune, validate_finetune

NAME = "glue"
HELP = "GLUE fine-tuning (CoLA, MRPC, MNLI)"
#: Its place among the subcommands (bert_trainer.tasks lists them by ORDER, in the order a pipeline runs them).
ORDER = 30


def add_arguments(g: argparse.ArgumentParser) -> None:
    g.add_argument("--task_name", required=True, choices=["CoLA", "MRPC", "MNLI"])
    g.add_argument("--data_dir", required=True, help="folder with train.tsv and dev*.tsv: local or s3://")
    bool_flag(g, "do_eval", "score the dev split(s)")
    g.add_argument("--eval_batch_size", type=int, default=64)
    bool_flag(g, "first_epoch_eval", "also score the first dev split after the first epoch and report it "
                                     "(results.json firstEpoch: the metrics and how many classes were predicted), "
                                     "for a sweep's early stop")
    add_finetune_arguments(g, batch=32, lr=2e-5, epochs=3.0, seq=128)


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Neither --do_train nor --do_eval means both; every split the run reads must exist."""
    if not (args.do_train or args.do_eval):
        args.do_train = args.do_eval = True
    if args.eval_batch_size <= 0:
        parser.error(f"--eval_batch_size must be positive, got {args.eval_batch_size}")
    if args.first_epoch_eval and not (args.do_train and args.do_eval):
        parser.error("--first_epoch_eval: scores the dev split during training; needs --do_train and --do_eval")
    validate_finetune(parser, args)
    splits = (["train"] if args.do_train else []) + (
        ["dev_matched", "dev_mismatched"] if args.task_name == "MNLI" else ["dev"]) * bool(args.do_eval)
    for split in splits:
        path = storage.join(args.data_dir, f"{split}.tsv")
        if not storage.exists(path):
            parser.error(f"--data_dir: {path}: not found ({args.task_name} needs {', '.join(s + '.tsv' for s in splits)})")


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from bert_trainer.tasks.glue import driver  # noqa: PLC0415 - imports TensorFlow

    return run_finetune(parser, args, NAME, driver.run)


def _predict_check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """predict --task_name <a GLUE task>: a GLUE file is a TSV, and SQuAD's flag does not apply."""
    if args.version_2_with_negative:
        parser.error("--version_2_with_negative: only for --task_name squad")
    if not args.predict_file.endswith(".tsv"):
        parser.error(f"--predict_file: {args.predict_file}: a GLUE file is a .tsv (e.g. dev.tsv)")


#: Google run_classifier's head: one logit per label; predict runs it on a GLUE task's TSV (glue/head.py).
HEAD = Head(
    label="GLUE", architecture="BertForSequenceClassification",
    tensors={"output_weights": "classifier.weight", "output_bias": "classifier.bias"},
    detect=("output_weights",), outputs=("logits",), labels_from="output_weights",
    predict_names=tuple(GLUE_TASKS), predict_seq_length=128, predict_check=_predict_check,
    predict_labels=lambda task_name: len(GLUE_TASKS[task_name].labels),
    module="bert_trainer.tasks.glue.head",
)

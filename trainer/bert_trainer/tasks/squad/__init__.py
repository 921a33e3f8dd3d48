"""``squad``: SQuAD v1.1/v2.0 fine-tuning and prediction, the flags of NVIDIA's run_squad.py.

This module is the command line (TensorFlow-free); the fine-tuning itself is
:mod:`bert_trainer.tasks.squad.driver`, imported only once the flags passed.
"""

from __future__ import annotations

import argparse

from bert_trainer import storage
from bert_trainer.flags import bool_flag
from bert_trainer.model.heads import Head
from bert_trainer.tasks.common import require_positive
from bert_trainer.tasks.finetuning import add_finetune_arguments, run_finetune, validate_finetune

NAME = "squad"
HELP = "SQuAD v1.1/v2.0 fine-tuning and prediction"
#: Its place among the subcommands (bert_trainer.tasks lists them by ORDER, in the order a pipeline runs them).
ORDER = 40


def add_arguments(q: argparse.ArgumentParser) -> None:
    q.add_argument("--train_file", help="SQuAD JSON for training: local or s3://")
    q.add_argument("--predict_file", help="SQuAD JSON to predict (and score): local or s3://")
    bool_flag(q, "do_predict", "write predictions.json for --predict_file")
    bool_flag(q, "version_2_with_negative", "SQuAD 2.0: questions may have no answer")
    q.add_argument("--null_score_diff_threshold", type=float, default=0.0)
    q.add_argument("--doc_stride", type=int, default=128)
    q.add_argument("--max_query_length", type=int, default=64)
    q.add_argument("--predict_batch_size", type=int, default=32)
    q.add_argument("--n_best_size", type=int, default=20)
    q.add_argument("--max_answer_length", type=int, default=30)
    add_finetune_arguments(q, batch=8, lr=5e-6, epochs=2.0, seq=384)


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Neither --do_train nor --do_predict means both; the windows must fit; the files must exist."""
    if not (args.do_train or args.do_predict):
        args.do_train = args.do_predict = True
    require_positive(parser, args, ("doc_stride", "max_query_length", "predict_batch_size", "n_best_size",
                                    "max_answer_length"))
    if args.doc_stride >= args.max_seq_length or args.max_query_length > args.max_seq_length - 4:
        parser.error("--doc_stride must be < --max_seq_length and --max_query_length <= --max_seq_length - 4")
    validate_finetune(parser, args)
    for flag, wanted in (("train_file", args.do_train), ("predict_file", args.do_predict)):
        value = getattr(args, flag)
        if wanted and not value:
            parser.error(f"--{flag} is required with --do_{'train' if flag == 'train_file' else 'predict'}")
        if wanted and not storage.exists(value):
            parser.error(f"--{flag}: {value}: not found")


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from bert_trainer.tasks.squad import driver  # noqa: PLC0415 - imports TensorFlow

    return run_finetune(parser, args, NAME, driver.run)


def _predict_check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """predict --task_name squad: the windows must fit, as for training."""
    if args.doc_stride >= args.max_seq_length or args.max_query_length > args.max_seq_length - 4:
        parser.error("--doc_stride must be < --max_seq_length and --max_query_length <= --max_seq_length - 4")


#: Google run_squad's head: a start and an end logit per token; predict runs it on a SQuAD JSON file
#: (squad/head.py).
HEAD = Head(
    label="SQuAD", architecture="BertForQuestionAnswering",
    tensors={"cls/squad/output_weights": "qa_outputs.weight", "cls/squad/output_bias": "qa_outputs.bias"},
    detect=("cls/squad/output_weights",), outputs=("start_logits", "end_logits"),
    predict_names=(NAME,), predict_seq_length=384, predict_check=_predict_check,
    module="bert_trainer.tasks.squad.head",
)

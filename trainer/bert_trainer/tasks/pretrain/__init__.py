"""``pretrain``: masked-LM + next-sentence pretraining, the flags of NVIDIA's run_pretraining.py.

This module is the command line (TensorFlow-free); the training itself is
:mod:`bert_trainer.tasks.pretrain.driver` (with its TensorBoard and loss-curve
reporter, :mod:`~bert_trainer.tasks.pretrain.reporter`), imported only once the flags passed.
"""

from __future__ import annotations

import argparse

from bert_trainer import storage
from bert_trainer.export_layout import add_export_flag, check_export_flag
from bert_trainer.flags import add_model_flags, add_optimizer_flags, bool_flag
from bert_trainer.model.heads import Head
from bert_trainer.tasks.common import (KEEP_HELP, check_init_checkpoint, check_keep, check_output_dir, model_config,
                                       require_positive, run_guarded)

NAME = "pretrain"
HELP = "masked-LM + next-sentence pretraining"
#: Its place among the subcommands (bert_trainer.tasks lists them by ORDER, in the order a pipeline runs them).
ORDER = 10
#: The masked-LM and next-sentence heads (Google's run_pretraining names; the MLM decoder is tied to the embeddings).
HEAD = Head(
    label="pretraining", architecture="BertForPreTraining",
    tensors={"cls/predictions/output_bias": "cls.predictions.bias",
             "cls/seq_relationship/output_weights": "cls.seq_relationship.weight",
             "cls/seq_relationship/output_bias": "cls.seq_relationship.bias"},
    detect=("cls/predictions/output_bias", "cls/seq_relationship/output_weights"),
    outputs=("mlm_logits", "nsp_logits"), module="bert_trainer.tasks.pretrain.head",
)

POSITIVE = ("train_batch_size", "eval_batch_size", "max_seq_length", "max_predictions_per_seq",
            "num_train_steps", "num_accumulation_steps", "save_checkpoints_steps", "report_every_steps",
            "max_eval_steps")


def add_arguments(p: argparse.ArgumentParser) -> None:
    bool_flag(p, "horovod", "use Horovod (run under mpirun/horovodrun)")
    p.add_argument("--input_files_dir", help="training TFRecords: local dir or s3:// prefix")
    p.add_argument("--eval_files_dir", help="eval TFRecords: local dir or s3:// prefix")
    p.add_argument("--output_dir", required=True, help="local dir or s3:// prefix for checkpoints and reports")
    add_model_flags(p)
    p.add_argument("--train_batch_size", type=int, default=32, help="per-process micro-batch")
    p.add_argument("--eval_batch_size", type=int, default=8)
    p.add_argument("--max_seq_length", type=int, default=128)
    p.add_argument("--max_predictions_per_seq", type=int, default=20)
    p.add_argument("--num_train_steps", type=int, default=1000, help="optimizer steps")
    p.add_argument("--num_warmup_steps", type=int, default=100)
    p.add_argument("--num_accumulation_steps", type=int, default=1)
    p.add_argument("--learning_rate", type=float, default=1e-4)
    add_optimizer_flags(p, optimizer="lamb")
    bool_flag(p, "allreduce_post_accumulation", "allreduce once per optimizer step, not per micro-batch")
    p.add_argument("--save_checkpoints_steps", type=int, default=1000)
    p.add_argument("--keep_checkpoint_max", type=int, default=0, help=KEEP_HELP)
    p.add_argument("--init_checkpoint", help="weights only: our ckpt, Google TF1 ckpt, HF safetensors, or a dir")
    bool_flag(p, "do_train", "train (the default when neither --do_train nor --do_eval is given)")
    bool_flag(p, "do_eval", "evaluate on --eval_files_dir at the end")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--max_eval_steps", type=int, default=100)
    p.add_argument("--report_every_steps", type=int, default=10, help="progress.json period in steps")
    p.add_argument("--local_dir", help="local scratch space (default: $TMPDIR/bert-trainer-scratch)")
    add_export_flag(p)


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fail early (exit 2) on anything that would otherwise fail hours into a job; sets args.bert_config."""
    require_positive(parser, args, POSITIVE)
    check_keep(parser, args)
    check_export_flag(parser, args, trains=args.do_train or not args.do_eval)
    if args.num_warmup_steps < 0:
        parser.error("--num_warmup_steps must be >= 0")
    if args.learning_rate <= 0:
        parser.error("--learning_rate must be positive")
    args.bert_config = model_config(parser, args)
    if args.max_predictions_per_seq > args.max_seq_length:
        parser.error("--max_predictions_per_seq cannot exceed --max_seq_length")
    do_train = args.do_train or not args.do_eval
    for flag, required in (("input_files_dir", do_train), ("eval_files_dir", args.do_eval)):
        value = getattr(args, flag)
        if not required:
            continue
        if not value:
            parser.error(f"--{flag} is required")
        try:
            storage.check_readable_prefix(value)
        except storage.StorageError as exc:
            parser.error(f"--{flag}: {exc}")
    check_init_checkpoint(parser, args)
    check_output_dir(parser, args.output_dir)


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from bert_trainer.dist import HorovodUnavailable  # noqa: PLC0415 - imports TensorFlow
    from bert_trainer.tasks.pretrain import driver  # noqa: PLC0415

    from bert_trainer.data.record_check import RecordError  # noqa: PLC0415

    return run_guarded(parser, NAME, lambda: driver.run(args, args.bert_config), stoppable=True,
                       horovod_errors=(HorovodUnavailable,), input_errors=(RecordError,))

"""What the fine-tuning tasks (glue, squad) share on the command line: flags as NVIDIA's
run_classifier.py / run_squad.py and the operator render them, checks, and how they run.

TensorFlow-free; each task imports its driver (``bert_trainer.tasks.<task>.driver``)
only to run it, after the checks passed.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, Callable

from bert_trainer import storage
from bert_trainer.export_layout import add_export_flag, check_export_flag
from bert_trainer.flags import add_model_flags, add_optimizer_flags, bool_flag
from bert_trainer.tasks.common import (KEEP_HELP, check_init_checkpoint, check_keep, check_output_dir, model_config,
                                      require_positive, run_guarded)

if TYPE_CHECKING:
    from bert_trainer.model.config import BertConfig

POSITIVE = ("train_batch_size", "max_seq_length", "save_checkpoints_steps", "num_accumulation_steps", "report_every_steps")


def add_finetune_arguments(g: argparse.ArgumentParser, *, batch: int, lr: float, epochs: float, seq: int) -> None:
    """Flags every fine-tuning task takes; the defaults are the task's."""
    bool_flag(g, "horovod", "use Horovod (run under mpirun/horovodrun)")
    g.add_argument("--vocab_file", required=True, help="WordPiece vocab.txt: local or s3://")
    bool_flag(g, "do_lower_case", "lower-case and strip accents (uncased models)")
    add_model_flags(g)
    g.add_argument("--init_checkpoint", help="pretrained weights: our ckpt dir, Google TF1 ckpt or HF safetensors")
    g.add_argument("--output_dir", required=True)
    bool_flag(g, "do_train", "fine-tune")
    g.add_argument("--max_seq_length", type=int, default=seq)
    g.add_argument("--train_batch_size", type=int, default=batch, help="per-process micro-batch")
    # Pretraining's names: the same engine runs both (bert_trainer.engine).
    g.add_argument("--num_accumulation_steps", type=int, default=1,
                   help="micro-batches per optimizer step (global batch = train_batch_size x this x processes)")
    bool_flag(g, "allreduce_post_accumulation", "allreduce once per optimizer step, not per micro-batch")
    g.add_argument("--learning_rate", type=float, default=lr)
    g.add_argument("--num_train_epochs", type=float, default=epochs)
    g.add_argument("--warmup_proportion", type=float, default=0.1)
    add_optimizer_flags(g, optimizer="adam")
    g.add_argument("--seed", type=int, default=12345)
    g.add_argument("--save_checkpoints_steps", type=int, default=1000,
                   help="full-state checkpoint period in steps (also on SIGTERM and at the end); a rerun resumes")
    g.add_argument("--keep_checkpoint_max", type=int, default=0, help=KEEP_HELP)
    g.add_argument("--report_every_steps", type=int, default=20, help="progress.json period in optimizer steps")
    bool_flag(g, "print_metrics", "print the final dev metrics as name=value lines on stdout (Katib's StdOut "
                                  "metrics collector)")
    add_export_flag(g, serves=True)


def validate_finetune(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What every fine-tuning task checks before TensorFlow loads (exit 2 naming the flag); sets args.bert_config
    and makes args.export_formats a list. The task has resolved args.do_train first."""
    require_positive(parser, args, POSITIVE)
    check_export_flag(parser, args, trains=args.do_train, serves=True)
    check_keep(parser, args)
    if args.learning_rate <= 0 or args.num_train_epochs <= 0:
        parser.error("--learning_rate and --num_train_epochs must be positive")
    if not 0 <= args.warmup_proportion < 1:
        parser.error(f"--warmup_proportion must be in [0, 1), got {args.warmup_proportion}")
    args.bert_config = model_config(parser, args)
    if not storage.exists(args.vocab_file):
        parser.error(f"--vocab_file: {args.vocab_file}: not found")
    check_init_checkpoint(parser, args)
    check_output_dir(parser, args.output_dir)


def run_finetune(parser: argparse.ArgumentParser, args: argparse.Namespace, task: str,
                 drive: Callable[[argparse.Namespace, BertConfig], object]) -> int:
    """Run the task's driver with TensorFlow; bad data exits 2 naming the file and record."""
    from bert_trainer.dist import HorovodUnavailable  # noqa: PLC0415 - imports TensorFlow
    from bert_trainer.finetune.glue_data import GlueDataError  # noqa: PLC0415
    from bert_trainer.finetune.squad_data import SquadDataError  # noqa: PLC0415
    from bert_trainer.finetune.tokenization import VocabError  # noqa: PLC0415

    return run_guarded(parser, task, lambda: drive(args, args.bert_config), stoppable=True,
                       horovod_errors=(HorovodUnavailable,), input_errors=(GlueDataError, SquadDataError, VocabError))


def print_metrics(args: argparse.Namespace, results: dict[str, Any], chief: bool) -> None:
    """--print_metrics: rank 0 prints the final dev metrics as name=value lines (finetune/metric_lines.py says why)."""
    if not (getattr(args, "print_metrics", False) and chief):
        return
    from bert_trainer.finetune.metric_lines import metric_lines  # noqa: PLC0415 - light, and only when asked

    for line in metric_lines(results):
        print(line, flush=True)

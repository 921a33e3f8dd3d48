"""`python -m bert_trainer glue|squad`: flags as NVIDIA's run_classifier.py / run_squad.py and the operator render them."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Callable

from bert_trainer import storage
from bert_trainer.flags import add_model_flags, add_optimizer_flags, bool_flag

log = logging.getLogger("bert_trainer")
POSITIVE = ("train_batch_size", "max_seq_length", "save_checkpoints_steps")


def _common(g: argparse.ArgumentParser, *, batch: int, lr: float, epochs: float, seq: int) -> None:
    """Flags every fine-tuning task takes."""
    bool_flag(g, "horovod", "use Horovod (run under mpirun/horovodrun)")
    g.add_argument("--vocab_file", required=True, help="WordPiece vocab.txt: local or s3://")
    bool_flag(g, "do_lower_case", "lower-case and strip accents (uncased models)")
    add_model_flags(g)
    g.add_argument("--init_checkpoint", help="pretrained weights: our ckpt dir, Google TF1 ckpt or HF safetensors")
    g.add_argument("--output_dir", required=True)
    bool_flag(g, "do_train", "fine-tune")
    g.add_argument("--max_seq_length", type=int, default=seq)
    g.add_argument("--train_batch_size", type=int, default=batch)
    g.add_argument("--learning_rate", type=float, default=lr)
    g.add_argument("--num_train_epochs", type=float, default=epochs)
    g.add_argument("--warmup_proportion", type=float, default=0.1)
    add_optimizer_flags(g, optimizer="adam")
    g.add_argument("--seed", type=int, default=12345)
    g.add_argument("--save_checkpoints_steps", type=int, default=1000,
                   help="full-state checkpoint period in steps (also on SIGTERM and at the end); a rerun resumes")


def add_glue_parser(sub) -> argparse.ArgumentParser:
    g = sub.add_parser("glue", help="GLUE fine-tuning (CoLA, MRPC, MNLI)")
    g.add_argument("--task_name", required=True, choices=["CoLA", "MRPC", "MNLI"])
    g.add_argument("--data_dir", required=True, help="folder with train.tsv and dev*.tsv: local or s3://")
    bool_flag(g, "do_eval", "score the dev split(s)")
    g.add_argument("--eval_batch_size", type=int, default=64)
    _common(g, batch=32, lr=2e-5, epochs=3.0, seq=128)
    return g


def add_squad_parser(sub) -> argparse.ArgumentParser:
    q = sub.add_parser("squad", help="SQuAD v1.1/v2.0 fine-tuning and prediction")
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
    _common(q, batch=8, lr=5e-6, epochs=2.0, seq=384)
    return q


def _validate_common(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """What every fine-tuning task checks before TensorFlow loads: exit 2 naming the flag."""
    from bert_trainer.cli import check_init_checkpoint, check_output_dir, resolve_config  # noqa: PLC0415

    for name in POSITIVE:
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive, got {getattr(args, name)}")
    if args.learning_rate <= 0 or args.num_train_epochs <= 0:
        parser.error("--learning_rate and --num_train_epochs must be positive")
    if not 0 <= args.warmup_proportion < 1:
        parser.error(f"--warmup_proportion must be in [0, 1), got {args.warmup_proportion}")
    cfg = resolve_config(parser, args)
    if args.max_seq_length > cfg.max_position_embeddings:
        parser.error(f"--max_seq_length {args.max_seq_length} exceeds the model's max_position_embeddings "
                     f"{cfg.max_position_embeddings}")
    if not storage.exists(args.vocab_file):
        parser.error(f"--vocab_file: {args.vocab_file}: not found")
    check_init_checkpoint(parser, args)
    check_output_dir(parser, args)
    return cfg


def validate_glue(parser: argparse.ArgumentParser, args: argparse.Namespace):
    if not (args.do_train or args.do_eval):
        args.do_train = args.do_eval = True
    if args.eval_batch_size <= 0:
        parser.error(f"--eval_batch_size must be positive, got {args.eval_batch_size}")
    cfg = _validate_common(parser, args)
    splits = (["train"] if args.do_train else []) + (
        ["dev_matched", "dev_mismatched"] if args.task_name == "MNLI" else ["dev"]) * bool(args.do_eval)
    for split in splits:
        path = storage.join(args.data_dir, f"{split}.tsv")
        if not storage.exists(path):
            parser.error(f"--data_dir: {path}: not found ({args.task_name} needs {', '.join(s + '.tsv' for s in splits)})")
    return cfg


def validate_squad(parser: argparse.ArgumentParser, args: argparse.Namespace):
    if not (args.do_train or args.do_predict):
        args.do_train = args.do_predict = True
    for name in ("doc_stride", "max_query_length", "predict_batch_size", "n_best_size", "max_answer_length"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive, got {getattr(args, name)}")
    if args.doc_stride >= args.max_seq_length or args.max_query_length > args.max_seq_length - 4:
        parser.error("--doc_stride must be < --max_seq_length and --max_query_length <= --max_seq_length - 4")
    cfg = _validate_common(parser, args)
    for flag, wanted in (("train_file", args.do_train), ("predict_file", args.do_predict)):
        value = getattr(args, flag)
        if wanted and not value:
            parser.error(f"--{flag} is required with --do_{'train' if flag == 'train_file' else 'predict'}")
        if wanted and not storage.exists(value):
            parser.error(f"--{flag}: {value}: not found")
    return cfg





def _run(parser: argparse.ArgumentParser, args: argparse.Namespace, validate: Callable, task: str) -> int:
    """Validate (exit 2 naming the flag), then run the task with TensorFlow; bad data exits 2 naming file and record."""
    cfg = validate(parser, args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import importlib  # noqa: PLC0415

    from bert_trainer.dist import HorovodUnavailable  # noqa: PLC0415 - imports TensorFlow
    from bert_trainer.finetune.glue_data import GlueDataError  # noqa: PLC0415
    from bert_trainer.finetune.squad_data import SquadDataError  # noqa: PLC0415
    from bert_trainer.cli import run_guarded  # noqa: PLC0415
    from bert_trainer.finetune.tokenization import VocabError  # noqa: PLC0415

    module = importlib.import_module(f"bert_trainer.tasks.{task}")
    return run_guarded(parser, task, lambda: module.run(args, cfg), stoppable=True, horovod_errors=(HorovodUnavailable,),
                       input_errors=(GlueDataError, SquadDataError, VocabError))


def run_glue(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    return _run(parser, args, validate_glue, "glue")


def run_squad(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    return _run(parser, args, validate_squad, "squad")

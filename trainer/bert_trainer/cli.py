"""Command line of ``python -m bert_trainer``.

The flag names are a contract with the operator, which renders these exact command
lines; they mirror NVIDIA's run_pretraining.py so a job reads like the recipe.
Inputs are validated before TensorFlow is imported, so a bad flag fails in a second
with exit status 2 and a message that names the flag (no traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Callable

from bert_trainer import storage
from bert_trainer.flags import add_model_flags, add_optimizer_flags, bool_flag

log = logging.getLogger("bert_trainer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bert_trainer",
                                     description="BERT pretraining (NVIDIA recipe) for bert-operator.")
    parser.add_argument("--log_level", default=os.environ.get("BERT_TRAINER_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="task", required=True, metavar="{pretrain,prepare-data,glue,squad,sync}")

    p = sub.add_parser("pretrain", help="masked-LM + next-sentence pretraining")
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
    p.add_argument("--init_checkpoint", help="weights only: our ckpt, Google TF1 ckpt, HF safetensors, or a dir")
    bool_flag(p, "do_train", "train (the default when neither --do_train nor --do_eval is given)")
    bool_flag(p, "do_eval", "evaluate on --eval_files_dir at the end")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--max_eval_steps", type=int, default=100)
    p.add_argument("--report_every_steps", type=int, default=10, help="progress.json period in steps")
    p.add_argument("--local_dir", help="local scratch space (default: $TMPDIR/bert-trainer-scratch)")

    s = sub.add_parser("sync", help="copy an s3:// prefix or local dir to a local dir (skips same-size files)")
    s.add_argument("--source", required=True)
    s.add_argument("--dest", required=True)

    d = sub.add_parser("prepare-data", help="raw text (Wikipedia extractor output, books) to pretraining TFRecords")
    bool_flag(d, "horovod", "under mpirun/horovodrun: each rank makes shards rank, rank+size, ...")
    d.add_argument("--input_dir", required=True, help="raw text: local dir or s3:// prefix (read recursively)")
    d.add_argument("--output_dir", required=True,
                   help="local dir or s3:// prefix; training/ and test/ shards, progress.json, results.json")
    d.add_argument("--vocab_file", required=True, help="WordPiece vocab.txt: local path or s3:// URI")
    bool_flag(d, "do_lower_case", "lower-case and strip accents (uncased models)")
    bool_flag(d, "do_whole_word_mask", "mask whole words (a token and its ## pieces) together")
    d.add_argument("--max_seq_length", type=int, default=128)
    d.add_argument("--max_predictions_per_seq", type=int, default=20)
    d.add_argument("--masked_lm_prob", type=float, default=0.15)
    d.add_argument("--short_seq_prob", type=float, default=0.1)
    d.add_argument("--dupe_factor", type=int, default=5)
    d.add_argument("--n_shards", type=int, default=256, help="training shards (test shards: at most as many)")
    d.add_argument("--test_split", type=float, default=10, help="percent of documents held out for test/")
    d.add_argument("--random_seed", type=int, default=12345)
    d.add_argument("--num_workers", type=int, default=0,
                   help="processes (default: all cores; 1 per rank with --horovod)")
    d.add_argument("--local_dir", help="local scratch space (default: $TMPDIR/bert-trainer-scratch)")

    from bert_trainer.finetune.cli import add_glue_parser, add_squad_parser  # noqa: PLC0415

    g = add_glue_parser(sub)
    q = add_squad_parser(sub)
    parser.set_defaults(subparsers={"pretrain": p, "sync": s, "prepare-data": d, "glue": g, "squad": q})
    return parser


POSITIVE = ("train_batch_size", "eval_batch_size", "max_seq_length", "max_predictions_per_seq",
            "num_train_steps", "num_accumulation_steps", "save_checkpoints_steps", "report_every_steps",
            "max_eval_steps")


def resolve_config(parser: argparse.ArgumentParser, args: argparse.Namespace):
    from bert_trainer.model.config import BertConfig, ConfigError  # noqa: PLC0415 - no TF import

    try:
        if args.bert_model:
            return BertConfig.preset(args.bert_model)
        if args.bert_config_json:
            return BertConfig.from_json(args.bert_config_json)
    except ConfigError as exc:
        parser.error(f"--{'bert_model' if args.bert_model else 'bert_config_json'}: {exc}")
    try:
        return BertConfig.from_json(storage.read_bytes(args.bert_config_file).decode())
    except (storage.StorageError, ConfigError, UnicodeDecodeError) as exc:
        parser.error(f"--bert_config_file: {exc}")
    return None  # unreachable: parser.error exits


def validate_pretrain(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """Fail early (exit 2) on anything that would otherwise fail hours into a job."""
    for name in POSITIVE:
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive, got {getattr(args, name)}")
    if args.num_warmup_steps < 0:
        parser.error("--num_warmup_steps must be >= 0")
    if args.learning_rate <= 0:
        parser.error("--learning_rate must be positive")
    cfg = resolve_config(parser, args)
    if args.max_seq_length > cfg.max_position_embeddings:
        parser.error(f"--max_seq_length {args.max_seq_length} exceeds the model's max_position_embeddings "
                     f"{cfg.max_position_embeddings}")
    if args.max_predictions_per_seq > args.max_seq_length:
        parser.error("--max_predictions_per_seq cannot exceed --max_seq_length")
    do_train = args.do_train or not args.do_eval
    needed = [("input_files_dir", do_train), ("eval_files_dir", args.do_eval)]
    for flag, required in needed:
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
    check_output_dir(parser, args)
    return cfg


def check_init_checkpoint(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.init_checkpoint:
        from bert_trainer.model.importer import ImportError_, resolve_init_checkpoint  # noqa: PLC0415

        try:
            resolve_init_checkpoint(args.init_checkpoint)
        except (ImportError_, storage.StorageError) as exc:
            parser.error(f"--init_checkpoint: {exc}")


def check_output_dir(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if storage.is_s3(args.output_dir):
        try:
            storage.list_files(args.output_dir)
        except storage.StorageError as exc:
            parser.error(f"--output_dir: {exc}")
    else:
        parent = os.path.abspath(args.output_dir)
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
            parser.error(f"--output_dir: {args.output_dir}: cannot create or write here ({parent} is not a "
                         "writable directory)")


def run_sync(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    start = time.monotonic()

    def progress(done: int, total: int, copied_bytes: int) -> None:
        print(f"sync: {done}/{total} files, {copied_bytes / 1e6:.1f} MB copied, "
              f"{time.monotonic() - start:.1f}s", file=sys.stderr, flush=True)

    try:
        summary = storage.sync(args.source, args.dest, progress=progress)
    except storage.StorageError as exc:
        parser.error(f"--source: {exc}")
    print(json.dumps({"event": "sync_done", "source": args.source, "dest": args.dest, **summary}), flush=True)
    return 0


def _check_output_dir(parser: argparse.ArgumentParser, output_dir: str) -> None:
    if storage.is_s3(output_dir):
        try:
            storage.list_files(output_dir)
        except storage.StorageError as exc:
            parser.error(f"--output_dir: {exc}")
        return
    parent = os.path.abspath(output_dir)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        parser.error(f"--output_dir: {output_dir}: cannot create or write here ({parent} is not a "
                     "writable directory)")


def validate_prepare(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """Flags, vocab, input and output reachability; returns (vocab tokens, input entries)."""
    from bert_trainer.prep.vocab import VocabError, parse_vocab  # noqa: PLC0415 - no TF import

    for name in ("max_seq_length", "max_predictions_per_seq", "dupe_factor", "n_shards"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive, got {getattr(args, name)}")
    if args.max_seq_length < 5:
        parser.error(f"--max_seq_length must be at least 5 ([CLS] A [SEP] B [SEP]), got {args.max_seq_length}")
    if args.max_predictions_per_seq > args.max_seq_length:
        parser.error("--max_predictions_per_seq cannot exceed --max_seq_length")
    if not 0 < args.masked_lm_prob < 1:
        parser.error(f"--masked_lm_prob must be in (0, 1), got {args.masked_lm_prob}")
    if not 0 <= args.short_seq_prob <= 1:
        parser.error(f"--short_seq_prob must be in [0, 1], got {args.short_seq_prob}")
    if not 0 <= args.test_split < 100:
        parser.error(f"--test_split is a percentage in [0, 100), got {args.test_split}")
    if args.num_workers < 0:
        parser.error(f"--num_workers must be >= 0 (0: all cores), got {args.num_workers}")
    try:
        tokens = parse_vocab(storage.read_bytes(args.vocab_file), args.vocab_file)
    except (storage.StorageError, VocabError) as exc:
        parser.error(f"--vocab_file: {exc}")
    try:
        entries = storage.check_readable_prefix(args.input_dir)
    except storage.StorageError as exc:
        parser.error(f"--input_dir: {exc}")
    _check_output_dir(parser, args.output_dir)
    return tokens, entries


def run_guarded(parser: argparse.ArgumentParser, task: str, work: Callable[[], object], *, stoppable: bool,
                horovod_errors: tuple[type[Exception], ...] = (), input_errors: tuple[type[Exception], ...] = ()) -> int:
    """Run a task with the exits every task shares, so they read the same whichever task fails.

    0 done; 143 stopped on SIGTERM/SIGINT after checkpointing (only `stoppable` tasks, whose loops
    check the stop flag; the others keep the default signal handling); 2 bad input, naming the
    flag when the error carries one (`.flag`) or the file and record otherwise; 1 storage failure.
    """
    from bert_trainer import stop  # noqa: PLC0415

    if stoppable:
        stop.install()
    try:
        work()
    except stop.Stopped as exc:
        print(f"{task}: {exc} (run again to resume)", file=sys.stderr)
        return stop.EXIT_STOPPED
    except horovod_errors as exc:
        parser.error(f"--horovod: {exc}")
    except input_errors as exc:
        flag = getattr(exc, "flag", None)
        if flag:
            parser.error(f"--{flag}: {exc}")
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except storage.StorageError as exc:
        log.error("event=storage_error %s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def run_prepare(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    tokens, entries = validate_prepare(parser, args)
    from bert_trainer.prep.shards import InputError  # noqa: PLC0415
    from bert_trainer.tasks import prepare_data  # noqa: PLC0415

    # Not stoppable: a stopped run loses only unfinished shards, and SIGTERM keeps its default (exit at once).
    return run_guarded(parser, "prepare-data", lambda: prepare_data.run(args, tokens, entries), stoppable=False,
                       horovod_errors=(prepare_data.HorovodMissing,), input_errors=(InputError,))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    parser = args.subparsers[args.task]  # errors print the subcommand's usage
    if args.task == "sync":
        return run_sync(parser, args)
    if args.task == "prepare-data":
        return run_prepare(parser, args)
    if args.task in ("glue", "squad"):
        from bert_trainer.finetune.cli import run_glue, run_squad  # noqa: PLC0415

        return (run_glue if args.task == "glue" else run_squad)(parser, args)
    cfg = validate_pretrain(parser, args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from bert_trainer.dist import HorovodUnavailable  # noqa: PLC0415 - imports TensorFlow
    from bert_trainer.tasks import pretrain  # noqa: PLC0415

    return run_guarded(parser, "pretrain", lambda: pretrain.run(args, cfg), stoppable=True,
                       horovod_errors=(HorovodUnavailable,))

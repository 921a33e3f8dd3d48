"""``prepare-data``: raw text (Wikipedia extractor output, books, or text already in the one sentence per
line form of Google's script) to pretraining TFRecords.

This module is the command line; the work is :mod:`bert_trainer.tasks.prepare_data.driver`.
Neither imports TensorFlow (but for the driver's Horovod fallback).
"""

from __future__ import annotations

import argparse
import os

from bert_trainer import storage
from bert_trainer.flags import bool_flag
from bert_trainer.prep.text import FORMATS
from bert_trainer.tasks.common import check_output_dir, require_positive, run_guarded

NAME = "prepare-data"
HELP = "raw text (Wikipedia extractor output, books, one sentence per line) to pretraining TFRecords"
#: Its place among the subcommands (bert_trainer.tasks lists them by ORDER, in the order a pipeline runs them).
ORDER = 20


def add_arguments(d: argparse.ArgumentParser) -> None:
    bool_flag(d, "horovod", "under mpirun/horovodrun: each rank makes shards rank, rank+size, ...")
    d.add_argument("--input_dir", required=True, help="raw text: local dir or s3:// prefix (read recursively)")
    d.add_argument("--output_dir", required=True,
                   help="local dir or s3:// prefix; training/ and test/ shards, progress.json, results.json")
    d.add_argument("--input_format", choices=("auto", *FORMATS), default="auto",
                   help="wikipedia (WikiExtractor <doc> blocks), books (plain text, one book per file) or bert "
                        "(one sentence per line, a blank line between documents, as create_pretraining_data.py "
                        "reads); auto: detected per file")
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


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Flags, vocab, input and output reachability; sets args.vocab_tokens and args.input_entries."""
    # Before numpy's first import (the driver's): prepare-data does no linear algebra, and OpenBLAS starts a thread
    # per core when numpy loads it, 50 ms of CPU in every process (a tenth of a run on a small corpus). Pool workers
    # inherit it. A value the user set wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from bert_trainer.prep.vocab import VocabError, parse_vocab  # noqa: PLC0415

    require_positive(parser, args, ("max_seq_length", "max_predictions_per_seq", "dupe_factor", "n_shards"))
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
        args.vocab_tokens = parse_vocab(storage.read_bytes(args.vocab_file), args.vocab_file)
    except (storage.StorageError, VocabError) as exc:
        parser.error(f"--vocab_file: {exc}")
    try:
        args.input_entries = storage.check_readable_prefix(args.input_dir)
    except storage.StorageError as exc:
        parser.error(f"--input_dir: {exc}")
    check_output_dir(parser, args.output_dir)


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from bert_trainer.prep.shards import InputError  # noqa: PLC0415
    from bert_trainer.tasks.prepare_data import driver  # noqa: PLC0415

    # Not stoppable: a stopped run loses only unfinished shards, and SIGTERM keeps its default (exit at once).
    return run_guarded(parser, NAME, lambda: driver.run(args, args.vocab_tokens, args.input_entries),
                       stoppable=False, horovod_errors=(driver.HorovodMissing,), input_errors=(InputError,))
